"""Load test: N concurrent answers streamed over SSE and WebSocket from a running Patchbay.

    python bench/load.py --url http://127.0.0.1:8000 --streams 200 --json

`--streams N` chat loops run at once, as N browser tabs would: each sends a message, follows
its answer to the end, waits a moment (`--think`) and sends the next, `--answers` times. They
start spread over `--ramp` seconds, so about N answers stream at any moment once all have
started (the report gives the peak it saw); `--ramp 0 --answers 1` is a thundering herd
instead, every message sent in the same instant.

It signs up its own users through the sign-up form (one per `--per-user` loops, as a person
would: the APIs cap live answers per user at MAX_LIVE_ANSWERS, 4 by default) and uses their
sessions. Every answer starts a conversation with a random usable adapter (or the base model);
half of the loops follow theirs over `/api/v1/messages/<id>/stream` (SSE), half over
`/ws/chat/`. For each answer it measures, on the client: time to first token from sending the
message, the gaps between tokens, the token `index` continuity (dropped and duplicated tokens),
and whether the streamed text equals the text the read API saved (read back after the measured
streams, not during them). `--json` prints one JSON object last.

With `--metrics-url` (once per process that runs an engine: the web's `/metrics` in local mode,
each worker's WORKER_METRICS_PORT in celery mode, and the web's `/metrics` again for its routing
decisions) it reads the counters before and after the measured streams and reports the adapter
cache hit rate, hits / (hits + misses) summed over those processes, and the routing decisions.
`--metrics-token` is sent as `Authorization: Bearer` (the web's METRICS_TOKEN). The first
`--metrics-url` must be the web's: from its CPU counters (the whole process, and its threads by
kind) the report gives the web process's CPU per answer started and per token delivered, with and
without its engine thread (local mode runs the engine in the web process).

`--baseline-answers N` first streams N answers from one loop alone (its transports taking turns),
then the load: the report of that one loop is `baseline`, and `overhead_p50_over_baseline` is the
load's overhead p50 over the lone loop's, measured in the same run against the same server.

Works against local and celery modes alike (it only speaks the public protocols).
docs/BENCHMARKS.md, "Streaming under load", has results and the commands that made them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import websockets

PASSWORD = "load-test correct horse battery"
PROMPTS = [
    "Tell me about rivers.",
    "What should I cook tonight?",
    "Describe a quiet morning.",
    "How do bridges stay up?",
    "Write a line about the sea.",
]


@dataclass
class Stream:
    transport: str
    sent_at: float = 0.0
    ended_at: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    text: str = ""
    message: int | None = None
    end: dict | None = None
    error: str | None = None
    saved_text: str | None = None

    @property
    def ttft_ms(self) -> float | None:
        return (self.arrivals[0] - self.sent_at) * 1000 if self.arrivals else None

    @property
    def gaps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.arrivals, self.arrivals[1:])]

    def on_envelope(self, envelope: dict) -> bool:
        """Record one envelope; True at the end of the answer."""
        kind, payload = envelope["type"], envelope["payload"]
        if kind == "inference.start":
            self.message = payload["message"]
        elif kind == "inference.token":
            self.arrivals.append(time.perf_counter())
            self.indexes.append(payload["index"])
            self.text += payload["text"]
        elif kind == "inference.error":
            self.error = payload["code"]
        elif kind == "inference.end":
            self.end = payload
            return True
        return False


@dataclass(frozen=True)
class Site:
    """The server under test. `behind_tls`: it runs as in production (DEBUG=0), where a proxy
    terminates TLS and tells it so with `X-Forwarded-Proto: https`; the client plays that proxy
    (plain HTTP to the server, that header on every request, cookies that are `Secure`)."""

    url: str
    behind_tls: bool = False

    @property
    def origin(self) -> str:
        """Where the browser's pages come from (Referer, Origin)."""
        return self.url.replace("http://", "https://", 1) if self.behind_tls else self.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://").replace("https://", "wss://")

    @property
    def headers(self) -> dict:
        return {"X-Forwarded-Proto": "https"} if self.behind_tls else {}


# --- users ------------------------------------------------------------------------------------
async def sign_up(site: Site, name: str) -> aiohttp.ClientSession:
    """A new user through the real sign-up form; the session stays signed in."""
    session = aiohttp.ClientSession(
        # unsafe: cookies for an IP address host; secure origin: the proxy's TLS, when played
        cookie_jar=aiohttp.CookieJar(
            unsafe=True, treat_as_secure_origin=[site.url] if site.behind_tls else None
        ),
        headers=site.headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
    )
    url = f"{site.url}/accounts/signup/"
    async with session.get(url) as response:
        response.raise_for_status()
    form = {"username": name, "password1": PASSWORD, "password2": PASSWORD,
            "csrfmiddlewaretoken": csrf(session)}
    referer = {"Referer": f"{site.origin}/accounts/signup/"}
    async with session.post(url, data=form, headers=referer, allow_redirects=False) as r:
        if r.status != 302:
            raise RuntimeError(f"sign-up of {name} answered {r.status}: {await r.text()}")
    return session


def csrf(session: aiohttp.ClientSession) -> str:
    return next(c.value for c in session.cookie_jar if c.key == "csrftoken")


def write_headers(session: aiohttp.ClientSession, site: Site) -> dict:
    return {"X-CSRFToken": csrf(session), "Referer": f"{site.origin}/"}


async def usable_adapters(session: aiohttp.ClientSession, site: Site) -> list[str | None]:
    async with session.get(f"{site.url}/api/v1/adapters/") as response:
        body = await response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return [row["slug"] for row in rows] + [None]  # None: the base model


# --- one stream per transport -----------------------------------------------------------------
async def sse_stream(session, site: Site, adapter: str | None, params: dict) -> Stream:
    stream = Stream("sse")
    headers = write_headers(session, site)
    async with session.post(
        f"{site.url}/api/v1/conversations/", json={"adapter": adapter}, headers=headers
    ) as response:
        conversation = (await response.json())["id"]
    stream.sent_at = time.perf_counter()
    async with session.post(
        f"{site.url}/api/v1/conversations/{conversation}/messages/",
        json={"content": random.choice(PROMPTS), "parameters": params},
        headers=headers,
    ) as response:
        body = await response.json()
        if response.status != 201:
            stream.error = body.get("code", str(response.status))
            return stream
    stream.message = body["message"]
    async with session.get(f"{site.url}/api/v1/messages/{stream.message}/stream") as response:
        data = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                data += line[6:]
            elif not line and data:
                if stream.on_envelope(json.loads(data)):
                    break
                data = ""
    return stream


async def ws_stream(session, site: Site, adapter: str | None, params: dict) -> Stream:
    stream = Stream("ws")
    cookie = "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)
    async with websockets.connect(
        f"{site.ws_url}/ws/chat/", origin=site.origin,
        additional_headers={"Cookie": cookie, **site.headers}, max_queue=None,
    ) as ws:
        frame = {"type": "chat.send", "content": random.choice(PROMPTS), "adapter": adapter,
                 "params": params}
        stream.sent_at = time.perf_counter()
        await ws.send(json.dumps(frame))
        async for raw in ws:
            if stream.on_envelope(json.loads(raw)):
                break
    return stream


async def saved_text(session, site: Site, message: int) -> str:
    async with session.get(f"{site.url}/api/v1/messages/{message}/") as response:
        return (await response.json())["content"]


CHECKS_AT_ONCE = 20  # read-backs in flight at once


async def check_saved(followed: list[tuple[aiohttp.ClientSession, Stream]], site: Site) -> None:
    """Read back every answer that ended, to compare with what was streamed. Done after the
    measured streams, not between them: users do not re-read each answer, and these reads were
    a quarter of the server's requests at 200 loops."""
    gate = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def check(session, stream: Stream) -> None:
        if stream.message is None or stream.end is None:
            return
        async with gate:
            try:
                stream.saved_text = await saved_text(session, site, stream.message)
            except Exception as exc:  # noqa: BLE001 -- counted, as a stream's own failure is
                stream.error = f"read back: {type(exc).__name__}: {exc}"[:200]

    await asyncio.gather(*(check(session, stream) for session, stream in followed))


async def one(session, site, transport, adapter, params, timeout) -> Stream:
    run = sse_stream if transport == "sse" else ws_stream
    try:
        stream = await asyncio.wait_for(run(session, site, adapter, params), timeout)
    except Exception as exc:  # noqa: BLE001 -- counted, not fatal: the report says what failed
        stream = Stream(transport, error=f"{type(exc).__name__}: {exc}"[:200])
    stream.ended_at = time.perf_counter()
    return stream


async def chat_loop(session, site, transports, adapters, params, args, start_after: float,
                    answers: int):
    """One tab: `answers` messages in turn, each followed to its end, with a pause between;
    the transports take turns."""
    await asyncio.sleep(start_after)
    streams = []
    for turn in range(answers):
        if turn:
            await asyncio.sleep(random.uniform(0, args.think))
        streams.append(await one(session, site, transports[turn % len(transports)],
                                 random.choice(adapters), params, args.timeout))
    return streams


# --- the report -------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def continuity(indexes: list[int]) -> tuple[int, int]:
    """(dropped, duplicated) tokens, from the indexes a client received in order."""
    duplicated = len(indexes) - len(set(indexes))
    dropped = (max(indexes) + 1 - len(set(indexes))) if indexes else 0
    return dropped, duplicated


def peak_concurrency(streams: list[Stream]) -> int:
    """The most answers in flight at once (from sending the message to the end), client side."""
    edges = sorted(
        [(s.sent_at, 1) for s in streams if s.sent_at]
        + [(s.ended_at, -1) for s in streams if s.sent_at]
    )
    peak = live = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


def report(streams: list[Stream], wall_s: float) -> dict:
    ttft = [s.ttft_ms for s in streams if s.ttft_ms is not None]
    overhead = _overheads(streams)
    gaps = [gap for s in streams for gap in s.gaps_ms]
    dropped = duplicated = mismatched = 0
    for s in streams:
        d, u = continuity(s.indexes)
        dropped, duplicated = dropped + d, duplicated + u
        mismatched += s.saved_text is not None and s.saved_text != s.text
    delivered = sum(len(s.indexes) for s in streams)  # token events (a delta may hold several)
    generated = sum(s.end["usage"]["completion_tokens"] for s in streams if s.end)
    # Rates per answer: generated = its tokens over the engine's total time; delivered = the
    # same tokens over the client's time from sending to the last token. Their ratio is the
    # share of the engine's speed that reaches the client.
    timed = [s for s in streams if s.end and s.arrivals and s.end["timings"]["total_ms"]]
    engine_ms = sum(s.end["timings"]["total_ms"] for s in timed)
    client_ms = sum((s.arrivals[-1] - s.sent_at) * 1000 for s in timed)
    errors = [s.error for s in streams if s.error] + ["text_mismatch"] * mismatched
    errors += ["no_end"] * sum(1 for s in streams if s.end is None and not s.error)
    return {
        "streams": len(streams),
        "sse_streams": sum(s.transport == "sse" for s in streams),
        "ws_streams": sum(s.transport == "ws" for s in streams),
        "peak_concurrent_streams": peak_concurrency(streams),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "dropped_tokens": dropped,
        "duplicated_tokens": duplicated,
        "texts_checked": sum(s.saved_text is not None for s in streams),
        "text_mismatches": mismatched,
        "token_events_delivered": delivered,
        "tokens_generated": generated,
        "delivered_over_generated": round(engine_ms / client_ms, 4) if client_ms else None,
        "tokens_per_s_generated_per_stream": _rate(timed, engine_ms),
        "tokens_per_s_delivered_per_stream": _rate(timed, client_ms),
        "tokens_per_s_overall": round(generated / wall_s, 1),
        "ttft_p50_ms": percentile(ttft, 0.5),
        "ttft_p95_ms": percentile(ttft, 0.95),
        "ttft_overhead_p50_ms": percentile(overhead, 0.5),
        "ttft_overhead_p95_ms": percentile(overhead, 0.95),
        **{f"ttft_overhead_p50_ms_{transport}": percentile(_overheads(streams, transport), 0.5)
           for transport in ("sse", "ws")},
        "itl_p50_ms": percentile(gaps, 0.5),
        "itl_p99_ms": percentile(gaps, 0.99),
        "wall_s": round(wall_s, 2),
    }


def _overheads(streams: list[Stream], transport: str | None = None) -> list[float]:
    """Client time to first token minus the engine's own, per answer."""
    return [
        s.ttft_ms - s.end["timings"]["ttft_ms"]
        for s in streams
        if s.ttft_ms is not None and s.end and s.end["timings"]["ttft_ms"] is not None
        and transport in (None, s.transport)
    ]


def _rate(streams: list[Stream], total_ms: float) -> float | None:
    tokens = sum(s.end["usage"]["completion_tokens"] for s in streams)
    return round(tokens / (total_ms / 1000), 1) if total_ms else None


# --- the servers' own counters ----------------------------------------------------------------
CACHE_COUNTERS = {
    "patchbay_adapter_cache_hits_total": "hits",
    "patchbay_adapter_cache_misses_total": "misses",
}
ROUTING_COUNTER = "patchbay_routing_decisions_total"
PROCESS_CPU = "process_cpu_seconds_total"  # prometheus_client's own, the whole process
THREAD_CPU = "patchbay_thread_cpu_seconds_total"  # chat/metrics.py, by thread kind


async def scrape(urls: list[str], token: str | None, site: Site) -> list[Counter]:
    """The counters this report uses, one Counter per process (url), summed over label sets."""
    headers = {**site.headers, **({"Authorization": f"Bearer {token}"} if token else {})}
    by_url = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for url in urls:
            async with session.get(url, headers=headers) as response:
                response.raise_for_status()
                by_url.append(counters(await response.text()))
    return by_url


def counters(text: str) -> Counter:
    sums: Counter = Counter()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        sample, value = line.rsplit(" ", 1)
        name = sample.split("{", 1)[0]
        if name in CACHE_COUNTERS:
            sums[CACHE_COUNTERS[name]] += float(value)
        elif name == ROUTING_COUNTER:
            outcome = re.search(r'outcome="([^"]*)"', sample).group(1)
            sums[f"routing_{outcome}"] += float(value)
        elif name == PROCESS_CPU:
            sums["cpu_process"] += float(value)
        elif name == THREAD_CPU:
            thread = re.search(r'thread="([^"]*)"', sample).group(1)
            sums[f"cpu_{thread}"] += float(value)
    return sums


def cpu_report(before: Counter, after: Counter, streams: list[Stream], wall_s: float) -> dict:
    """The web process's CPU over the measured streams: per answer started (the server gave it
    a message id) and per token event delivered; `web_…` leaves its engine thread out."""
    used = {key[4:]: after[key] - before[key] for key in after if key.startswith("cpu_")}
    if "process" not in used:
        return {}
    answers = sum(s.message is not None for s in streams)
    tokens = sum(len(s.indexes) for s in streams)
    web = used["process"] - used.get("engine", 0.0)
    threads = {kind: round(seconds, 2) for kind, seconds in used.items() if kind != "process"}
    if threads:  # what no Python thread of ours ran: torch's own threads, Daphne's C code
        threads["rest"] = round(used["process"] - sum(used[kind] for kind in threads), 2)
    return {
        "server_cpu_s": round(used["process"], 2),
        "server_cores_busy": round(used["process"] / wall_s, 2) if wall_s else None,
        "server_cpu_s_by_thread": threads,
        "server_cpu_ms_per_answer": _per(used["process"], answers),
        "server_cpu_ms_per_token": _per(used["process"], tokens),
        "web_cpu_ms_per_answer": _per(web, answers),
        "web_cpu_ms_per_token": _per(web, tokens),
    }


def _per(seconds: float, count: int) -> float | None:
    return round(seconds * 1000 / count, 3) if count else None


def cache_report(before: Counter, after: Counter) -> dict:
    delta = {key: int(after[key] - before[key]) for key in after if not key.startswith("cpu_")}
    hits, misses = delta.get("hits", 0), delta.get("misses", 0)
    routing = {k.removeprefix("routing_"): v for k, v in sorted(delta.items()) if k.startswith("routing_")}
    return {
        "adapter_cache_hits": hits,
        "adapter_cache_misses": misses,
        "adapter_cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "routing_decisions": routing,
    }


# --- main -------------------------------------------------------------------------------------
async def main(args) -> dict:
    random.seed(args.seed)
    site = Site(args.url.rstrip("/"), behind_tls=args.behind_tls)
    tag = uuid.uuid4().hex[:8]
    user_count = -(-args.streams // args.per_user)
    sessions = await asyncio.gather(
        *(sign_up(site, f"load-{tag}-{n}") for n in range(user_count))
    )
    try:
        adapters = await usable_adapters(sessions[0], site)
        params = {"max_tokens": args.max_tokens, "temperature": 0.8}
        for adapter in adapters[: args.warmup]:  # load the model and adapters; not counted
            await one(sessions[0], site, "sse", adapter, params, args.timeout)
        baseline = None
        if args.baseline_answers:
            transports = ("sse", "ws") if args.transport == "both" else (args.transport,)
            baseline = await phase(site, args, [(sessions[0], transports, 0.0)], adapters,
                                   params, args.baseline_answers)
        loops = []
        for n in range(args.streams):
            transport = args.transport if args.transport != "both" else ("sse", "ws")[n % 2]
            loops.append((sessions[n // args.per_user], (transport,),
                          args.ramp * n / args.streams))
        result = await phase(site, args, loops, adapters, params, args.answers)
        if baseline is not None:
            result["baseline"] = baseline
            result["overhead_p50_over_baseline"] = _ratio(
                result["ttft_overhead_p50_ms"], baseline["ttft_overhead_p50_ms"]
            )
        return result
    finally:
        await asyncio.gather(*(session.close() for session in sessions))


async def phase(site, args, loops, adapters, params, answers: int) -> dict:
    """Run chat loops (session, transports, start after) to their end; their report."""
    before = await scrape(args.metrics_url, args.metrics_token, site)
    started = time.perf_counter()
    by_loop = await asyncio.gather(*(
        chat_loop(session, site, transports, adapters, params, args, start_after, answers)
        for session, transports, start_after in loops
    ))
    wall_s = time.perf_counter() - started
    after = await scrape(args.metrics_url, args.metrics_token, site)
    await check_saved(
        [(loop[0], s) for loop, done in zip(loops, by_loop) for s in done], site
    )
    streams = [stream for done in by_loop for stream in done]
    result = report(streams, wall_s)
    if args.metrics_url:
        result.update(cache_report(sum(before, Counter()), sum(after, Counter())))
        result.update(cpu_report(before[0], after[0], streams, wall_s))
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def failed(result: dict) -> bool:
    runs = [result, *([result["baseline"]] if "baseline" in result else [])]
    return any(r["errors"] or r["dropped_tokens"] or r["duplicated_tokens"] for r in runs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    parser.add_argument("--streams", type=int, default=200,
                        help="chat loops at once, each with one answer streaming at a time")
    parser.add_argument("--answers", type=int, default=3, help="answers per loop, in turn")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which the loops start (default streams / 20)")
    parser.add_argument("--think", type=float, default=1.0,
                        help="a loop pauses up to this many seconds between its answers")
    parser.add_argument("--per-user", type=int, default=4,
                        help="streams per signed-up user (keep <= MAX_LIVE_ANSWERS)")
    parser.add_argument("--transport", choices=("both", "sse", "ws"), default="both")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per stream")
    parser.add_argument("--warmup", type=int, default=0,
                        help="answers (one per adapter, in turn) streamed first, not counted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-answers", type=int, default=0,
                        help="first stream this many answers from one loop alone, and report "
                        "the load's overhead p50 over that loop's")
    parser.add_argument("--metrics-url", action="append", default=[],
                        help="a Prometheus endpoint to read before and after (repeatable)")
    parser.add_argument("--metrics-token", help="bearer token for --metrics-url (METRICS_TOKEN)")
    parser.add_argument("--behind-tls", action="store_true",
                        help="the server runs with DEBUG=0: play its TLS proxy (X-Forwarded-Proto)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    for name in ("streams", "answers", "per_user", "max_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("ramp", "think", "warmup", "baseline_answers"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.timeout <= 0:
        parser.error("--timeout must be more than 0 seconds")
    if args.ramp is None:
        args.ramp = args.streams / 20
    return args


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    sys.exit(1 if failed(result) else 0)
