"""bench/load.py against a live Daphne: a few streams over both transports, all intact."""

import json
import subprocess
import sys

import pytest

from bench.load import (
    Stream,
    cache_report,
    continuity,
    counters,
    cpu_report,
    peak_concurrency,
    report,
)
from tests.e2e.servers import ROOT, local_deployment
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

KEYS = {"streams", "errors", "dropped_tokens", "duplicated_tokens", "delivered_over_generated",
        "ttft_overhead_p50_ms", "ttft_p95_ms", "itl_p99_ms"}


@pytest.fixture(scope="module")
def live_server_url(demo_model, tmp_path_factory):
    with local_deployment(tmp_path_factory.mktemp("load"), TEST_MODEL_DIR) as base_url:
        yield base_url


def load(base_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench/load.py", "--url", base_url, "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


def test_it_streams_over_sse_and_websocket_without_losing_a_token(live_server_url):
    done = load(live_server_url, "--streams", "6", "--per-user", "3", "--max-tokens", "8",
                "--warmup", "1", "--answers", "2", "--ramp", "0.5", "--think", "0.2",
                "--baseline-answers", "2", "--metrics-url", f"{live_server_url}/metrics")

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result)
    assert result["streams"] == 12 and result["sse_streams"] == result["ws_streams"] == 6
    assert 1 <= result["peak_concurrent_streams"] <= 6
    assert result["errors"] == result["dropped_tokens"] == result["duplicated_tokens"] == 0
    assert result["texts_checked"] == 12  # every answer read back and equal to what streamed
    assert 0 < result["delivered_over_generated"] <= 1.05
    assert result["ttft_overhead_p50_ms"] is not None
    # One loop alone first, its transports taking turns, then the load: the ratio of the two.
    baseline = result["baseline"]
    assert baseline["streams"] == 2 and baseline["sse_streams"] == baseline["ws_streams"] == 1
    assert baseline["peak_concurrent_streams"] == 1 and baseline["errors"] == 0
    assert result["overhead_p50_over_baseline"] == pytest.approx(
        result["ttft_overhead_p50_ms"] / baseline["ttft_overhead_p50_ms"], abs=0.01
    )
    # The web process's CPU over the measured streams, by thread, per answer and per token.
    assert {"engine", "connection", "main"} <= set(result["server_cpu_s_by_thread"])
    assert 0 < result["web_cpu_ms_per_answer"] < result["server_cpu_ms_per_answer"]
    assert 0 < result["web_cpu_ms_per_token"] < result["web_cpu_ms_per_answer"]


def test_it_plays_the_tls_proxy_in_front_of_a_server_with_production_settings(
    demo_model, tmp_path
):
    # DEBUG=0: HTTPS redirects, Secure cookies and a strict CSRF Referer check, all of which
    # a plain-HTTP client fails unless it says, as the proxy would, that the request came in
    # over TLS.
    with local_deployment(tmp_path, TEST_MODEL_DIR, DEBUG="0") as base_url:
        done = load(base_url, "--behind-tls", "--streams", "2", "--answers", "1",
                    "--max-tokens", "4", "--ramp", "0")

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["streams"] == 2 and result["errors"] == 0


@pytest.mark.parametrize("arguments, message", [
    (["--streams", "0"], "--streams must be at least 1"),
    (["--per-user", "0"], "--per-user must be at least 1"),
    (["--ramp", "-1"], "--ramp must not be negative"),
    (["--timeout", "0"], "--timeout must be more than 0 seconds"),
    (["--baseline-answers", "-1"], "--baseline-answers must not be negative"),
])
def test_it_refuses_arguments_that_cannot_make_a_run(arguments, message):
    done = load("http://127.0.0.1:9", *arguments)

    assert done.returncode == 2
    assert message in done.stderr


def test_it_counts_dropped_and_duplicated_tokens_from_their_indexes():
    assert continuity([0, 1, 2, 3]) == (0, 0)
    assert continuity([0, 1, 3]) == (1, 0)
    assert continuity([0, 1, 1, 2]) == (0, 1)
    assert continuity([]) == (0, 0)


def test_it_counts_the_most_answers_in_flight_at_once_from_send_to_end():
    streams = [Stream("ws", sent_at=0.0, ended_at=2.0), Stream("sse", sent_at=1.0, ended_at=3.0),
               Stream("ws", sent_at=2.5, ended_at=4.0), Stream("ws", sent_at=5.0, ended_at=6.0)]

    assert peak_concurrency(streams) == 2


def test_it_reports_a_stream_whose_text_differs_from_the_saved_one_as_an_error():
    stream = Stream("ws", sent_at=1.0, arrivals=[1.1, 1.2], indexes=[0, 1], text="ab")
    stream.end = {"usage": {"completion_tokens": 2}, "timings": {"ttft_ms": 90.0, "total_ms": 190.0}}
    stream.saved_text = "abc"

    result = report([stream], wall_s=1.0)

    assert result["errors"] == 1 and result["error_kinds"] == ["text_mismatch"]
    assert result["ttft_overhead_p50_ms"] == pytest.approx(10.0, abs=0.01)
    assert result["delivered_over_generated"] == pytest.approx(0.95)


def test_it_reports_the_adapter_cache_hit_rate_summed_over_processes_from_before_and_after():
    worker_a = 'patchbay_adapter_cache_hits_total{mode="celery",worker="a"} 10.0\n' \
               'patchbay_adapter_cache_misses_total{mode="celery",worker="a"} 2.0\n'
    worker_b = '# HELP patchbay_adapter_cache_hits Adapter cache hits.\n' \
               'patchbay_adapter_cache_hits_total{mode="celery",worker="b"} 4.0\n' \
               'patchbay_adapter_cache_misses_total{mode="celery",worker="b"} 1.0\n'
    web = 'patchbay_routing_decisions_total{mode="celery",worker="w",outcome="affinity"} 7.0\n'
    before = counters(worker_a) + counters(worker_b)
    after = counters(worker_a.replace("10.0", "19.0")) + counters(worker_b.replace("1.0", "3.0"))
    after.update(counters(web))

    result = cache_report(before, after)

    assert result["adapter_cache_hits"] == 9 and result["adapter_cache_misses"] == 2
    assert result["adapter_cache_hit_rate"] == pytest.approx(9 / 11, abs=1e-4)
    assert result["routing_decisions"] == {"affinity": 7}


def test_it_reports_the_web_processs_cpu_per_answer_and_per_token_with_and_without_its_engine():
    web = 'process_cpu_seconds_total 10.0\n' \
          'patchbay_thread_cpu_seconds_total{mode="local",thread="engine",worker="w"} 2.0\n' \
          'patchbay_thread_cpu_seconds_total{mode="local",thread="connection",worker="w"} 5.0\n' \
          'patchbay_thread_cpu_seconds_total{mode="local",thread="main",worker="w"} 2.5\n'
    later = web.replace("10.0", "14.0").replace("2.0", "3.0").replace("5.0", "7.0")
    streams = [Stream("ws", message=n, indexes=list(range(10))) for n in range(4)]
    streams.append(Stream("sse", error="too_many_streams"))  # refused: no answer started

    result = cpu_report(counters(web), counters(later), streams, wall_s=8.0)

    assert result["server_cpu_s"] == 4.0 and result["server_cores_busy"] == 0.5
    assert result["server_cpu_s_by_thread"] == {"engine": 1.0, "connection": 2.0, "main": 0.0,
                                                "rest": 1.0}
    assert result["server_cpu_ms_per_answer"] == 1000.0  # 4 s over 4 answers started
    assert result["server_cpu_ms_per_token"] == 100.0  # over 40 token events
    assert result["web_cpu_ms_per_answer"] == 750.0  # without the engine thread's 1 s
    assert result["web_cpu_ms_per_token"] == 75.0
    assert cache_report(counters(web), counters(later))["adapter_cache_hits"] == 0
