"""The batching engine: one decode loop over every live request, each with its own adapter.

See docs/ARCHITECTURE.md, "Engine". Callers `submit` requests from any thread; a single daemon
thread owns the model. Each turn of its loop is one step: it ends cancelled requests, admits
waiting ones first come first served (within the batch size, the token budget and the adapter
slots), prefills them together, then decodes one token for every row of the batch in a single
forward pass. Rows carry their own adapter slot (`inference.lora`), sampler, seed, stop
strings and detokenizer. A full wait queue refuses new work with `overloaded`. Every sink
call happens on the engine thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TypeVar

import torch

from inference import logprobs
from inference.adapter_cache import AdapterCache
from inference.batch import Batch, check_supported
from inference.detok import IncrementalDetokenizer
from inference.errors import InferenceError
from inference.grammar_masks import CLOSING_RESERVE, GrammarMatcher, GrammarTokenizer
from inference.lora import LoraLayers
from inference.model import BaseModel, load_base_model
from inference.sampling import Sampler
from inference.stops import StopMatcher
from inference.types import (
    AdapterRef,
    Event,
    EventSink,
    Failed,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    Started,
    TextDelta,
    TokenInfo,
)

logger = logging.getLogger(__name__)

OVERLOADED = "The server is busy; please try again in a moment."
INTERNAL_FAILURE = Failed("internal", "The request failed inside the engine; it has been logged.")
T = TypeVar("T")


# Tokens of the turn being continued that the detokenizer decodes against.
CONTINUE_CONTEXT_TOKENS = 6


@dataclass(eq=False)
class _Job:
    """A submitted request, from `submit` until its `Finished` event."""

    request: GenerationRequest
    sink: EventSink
    submitted_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False


@dataclass(eq=False)
class _Row:
    """An admitted request's decoding state: one row of the batch. Engine thread only."""

    job: _Job
    prompt: list[int]
    slot: int  # its adapter's slot in the batched LoRA layers
    sampler: Sampler
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    grammar: GrammarMatcher | None = None  # the row's place in its grammar, when it has one
    last_token: int = -1
    completion_tokens: int = 0
    deltas_sent: int = 0
    unsent_token_ids: list[int] = field(default_factory=list)
    unsent_tokens: list[TokenInfo] = field(default_factory=list)  # their details, when asked
    prompt_details: tuple[TokenInfo, ...] = ()  # when the request asked (prompt_logprobs)
    first_delta_at: float | None = None
    done: bool = False

    @property
    def params(self) -> SamplingParams:
        return self.job.request.params

    @property
    def tokens_left(self) -> int:
        """How many more tokens this row may write, counting the one being chosen."""
        return self.params.max_new_tokens - self.completion_tokens

    @property
    def near_limit(self) -> bool:
        """A constrained row this close to its limit closes its JSON (inference.grammar_masks)."""
        return self.tokens_left <= min(CLOSING_RESERVE, self.params.max_new_tokens // 2)

    @property
    def reserved_tokens(self) -> int:
        """The most cache this row can ever hold, counted against the token budget."""
        return len(self.prompt) + self.params.max_new_tokens


class BatchEngine:
    def __init__(
        self,
        base_model: str,
        *,
        device: str | None = None,
        max_batch_size: int = 16,
        max_batch_tokens: int = 65536,
        max_queued: int = 256,
        max_adapters: int = 32,
        adapter_cache_bytes: int = 2 << 30,
        adapter_max_rank: int = 64,
        quantization: str = "none",
    ):
        self._base: BaseModel = load_base_model(
            base_model, device=device, quantization=quantization
        )
        model = self._base.model
        check_supported(model)
        self._layers = LoraLayers(model, slots=max_adapters + 1)
        self._adapters = AdapterCache(
            self._layers,
            max_bytes=adapter_cache_bytes,
            max_rank=adapter_max_rank,
            dtype=model.dtype,
            device=self._base.device,
        )
        self._batch = Batch(model, self._layers.context, self._base.device)
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._max_queued = max_queued
        self._wakeup = threading.Condition()
        # Shared with callers' threads, guarded by self._wakeup:
        self._queue: deque[_Job] = deque()
        self._jobs: dict[str, _Job] = {}  # queued or active, by request id
        # Requests that end before reaching the model (refused, or cancelled while queued): the
        # engine thread answers them, so that sinks are only ever called from that thread.
        self._unstarted: list[tuple[_Job, Failed | None]] = []
        self._commands: deque[tuple[Callable[[], object], Future]] = deque()
        self._closed = False
        # Engine thread only: the batch's rows, in the order of the batch tensors.
        self._rows: list[_Row] = []
        self._grammar_tokenizer: GrammarTokenizer | None = None  # made on the first grammar
        self._namer = logprobs.TokenNamer(self._base.tokenizer, self._base.stop_token_ids)
        self._thread = threading.Thread(target=self._run, name="patchbay-engine", daemon=True)
        self._thread.start()

    @property
    def base(self) -> BaseModel:
        return self._base

    # The Engine protocol. These never wait for model work.

    def submit(self, request: GenerationRequest, sink: EventSink) -> None:
        job = _Job(request, sink)
        with self._wakeup:
            if self._closed:
                raise RuntimeError("The engine is closed.")
            refusal = self._refusal(request)
            if refusal:
                self._unstarted.append((job, refusal))
            else:
                self._jobs[request.id] = job
                self._queue.append(job)
            self._wakeup.notify()

    def is_full(self) -> bool:
        """True while a submit would be refused as `overloaded`: callers can refuse a request
        before doing anything for it (a race still ends in the refusal)."""
        with self._wakeup:
            return len(self._queue) >= self._max_queued

    def cancel(self, request_id: str) -> None:
        with self._wakeup:
            job = self._jobs.get(request_id)
            if job is None:
                return
            job.cancelled = True
            if job in self._queue:
                self._queue.remove(job)
                self._unstarted.append((job, None))
            self._wakeup.notify()

    def close(self) -> None:
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join()

    # The adapter cache, for the admin and metrics. These wait for the current step to end.

    def adapter_cache_stats(self) -> dict:
        """Counters (hits, misses, loads, evictions, load_ms) and what is loaded now."""
        return self._adapters.stats()

    def resident_adapters(self) -> list[str]:
        """Names of the adapters loaded now; never waits (a worker's heartbeat reads it)."""
        return self._adapters.resident()

    def preload(self, ref: AdapterRef, pin: bool = True) -> None:
        """Load an adapter before anyone asks for it; pinned ones are never evicted for room."""
        self._call(lambda: self._adapters.preload(ref, pin=pin))

    def evict(self, name: str) -> bool:
        """Unpin and drop the adapters of that name (once no row uses them); False: none."""
        return self._call(lambda: self._adapters.evict(name))

    def time_prefill(self, requests: list[GenerationRequest]) -> float:
        """Milliseconds for one batched prefill of these requests plus one decode step, run
        between steps with nothing else: the floor for their time to first token (benchmarks)."""
        return self._call(lambda: self._time_prefill(requests))

    def _time_prefill(self, requests: list[GenerationRequest]) -> float:
        prompts = [self._base.encode(request) for request in requests]
        slots = [self._adapters.acquire(request.adapter) for request in requests]
        try:
            batch = Batch(self._base.model, self._layers.context, self._base.device)
            started = time.perf_counter()
            with torch.inference_mode():
                logits, fresh = batch.prefill(prompts, slots)
                batch.extend(fresh)
                # .tolist() waits for the device, as sampling does.
                batch.decode(logits.argmax(dim=-1)).argmax(dim=-1).tolist()
            return (time.perf_counter() - started) * 1000
        finally:
            for request in requests:
                self._adapters.release(request.adapter)

    def _call(self, command: Callable[[], T]) -> T:
        """Run a command on the engine thread, between steps, and return what it returns."""
        if threading.current_thread() is self._thread:
            return command()
        future: Future = Future()
        with self._wakeup:
            if self._closed:
                raise RuntimeError("The engine is closed.")
            self._commands.append((command, future))
            self._wakeup.notify()
        return future.result()

    def _refusal(self, request: GenerationRequest) -> Failed | None:
        if request.id in self._jobs:
            return Failed(
                "invalid_request", f"A request with id {request.id!r} is already running."
            )
        if len(self._queue) >= self._max_queued:
            return Failed("overloaded", OVERLOADED)
        return None

    # The decode loop.

    def _run(self) -> None:
        while self._wait_for_work():
            self._end_unstarted()
            self._run_commands()
            self._drop_cancelled()
            self._admit()
            self._decode()
        self._shut_down()

    def _wait_for_work(self) -> bool:
        with self._wakeup:
            while not (
                self._closed or self._queue or self._unstarted or self._rows or self._commands
            ):
                self._wakeup.wait()
            return not self._closed

    def _end_unstarted(self) -> None:
        with self._wakeup:
            unstarted, self._unstarted = self._unstarted, []
        for job, failure in unstarted:
            self._end_early(job, failure)

    def _run_commands(self) -> None:
        with self._wakeup:
            commands, self._commands = self._commands, deque()
        for command, future in commands:
            try:
                future.set_result(command())
            except Exception as error:  # noqa: BLE001 - the caller gets it, as if it ran it
                future.set_exception(error)

    def _drop_cancelled(self) -> None:
        for row in self._rows:
            if row.job.cancelled and not row.done:
                self._finish(row, "cancelled")
        self._compact()

    # Admission: first come first served, prefilled together, joining at a step boundary.

    def _admit(self) -> None:
        admitted: list[_Row] = []
        reserved = sum(row.reserved_tokens for row in self._rows)
        while len(self._rows) + len(admitted) < self._max_batch_size:
            with self._wakeup:
                if not self._queue:
                    break
                job = self._queue.popleft()
            row = self._try_start(job, reserved)
            if row is False:
                with self._wakeup:
                    self._queue.appendleft(job)  # it waits at the head of the queue
                break
            if row is not None:
                admitted.append(row)
                reserved += row.reserved_tokens
        # Rows that want their prompt's log-probabilities need the logits of every position:
        # prefilled on their own, so the others keep computing only the last one.
        for group in (
            [row for row in admitted if not row.params.prompt_logprobs],
            [row for row in admitted if row.params.prompt_logprobs],
        ):
            if group:
                self._prefill(group)

    def _try_start(self, job: _Job, reserved: int) -> _Row | None | bool:
        """A new row; None when the request ended instead; False when it must wait."""
        if job.cancelled:
            self._end_early(job, None)
            return None
        try:
            return self._start(job, reserved) or False
        except InferenceError as error:
            self._end_early(job, Failed(error.code, error.message))
        except Exception:
            logger.exception("Could not start request %s", job.request.id)
            self._end_early(job, INTERNAL_FAILURE)
        return None

    def _start(self, job: _Job, reserved: int) -> _Row | None:
        params = job.request.params
        _check_params(params)
        prompt = self._base.encode(job.request)
        if not prompt:
            raise InferenceError("invalid_request", "The prompt is empty.")
        self._check_fits_context(len(prompt), params.max_new_tokens)
        if reserved + len(prompt) + params.max_new_tokens > self._max_batch_tokens:
            return None
        self._check_logit_bias(params)
        grammar = self._matcher(params.grammar) if params.grammar else None
        slot = self._adapters.acquire(job.request.adapter)
        if slot is None:
            return None
        self._emit(job, Started(prompt_tokens=len(prompt)))
        return _Row(
            job=job,
            prompt=prompt,
            slot=slot,
            sampler=Sampler(params, prompt),
            grammar=grammar,
            detokenizer=IncrementalDetokenizer(
                self._base.tokenizer,
                # Continuing a turn: decode against its last tokens, so the first new word keeps
                # the space a SentencePiece-style decode would drop at the start of a text.
                context=prompt[-CONTINUE_CONTEXT_TOKENS:] if job.request.continue_final_message else (),
            ),
            stops=StopMatcher(params.stop),
        )

    def _check_logit_bias(self, params: SamplingParams) -> None:
        vocab_size = self._base.model.get_output_embeddings().weight.shape[0]
        for token_id, _ in params.logit_bias:
            if not 0 <= token_id < vocab_size:
                raise InferenceError(
                    "invalid_request",
                    f"Field “logit_bias”: token {token_id} is not in this model's vocabulary "
                    f"of {vocab_size} tokens.",
                )

    def _matcher(self, grammar: str) -> GrammarMatcher:
        if self._grammar_tokenizer is None:
            vocab_size = self._base.model.get_output_embeddings().weight.shape[0]
            self._grammar_tokenizer = GrammarTokenizer(
                self._base.tokenizer, vocab_size, self._base.stop_token_ids
            )
        return self._grammar_tokenizer.matcher(grammar)

    def _check_fits_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self._base.max_positions
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            raise InferenceError(
                "context_too_long",
                f"The prompt has {prompt_tokens} tokens and up to {max_new_tokens} more were "
                f"asked for, but this model reads at most {limit} tokens in all.",
            )
        if prompt_tokens + max_new_tokens > self._max_batch_tokens:
            raise InferenceError(
                "context_too_long",
                f"The prompt has {prompt_tokens} tokens and up to {max_new_tokens} more were "
                f"asked for, more than this server's token budget of {self._max_batch_tokens}.",
            )

    def _prefill(self, rows: list[_Row]) -> None:
        every_position = rows[0].params.prompt_logprobs
        try:
            with torch.inference_mode():
                logits, fresh = self._batch.prefill(
                    [row.prompt for row in rows], [row.slot for row in rows], every_position
                )
                if every_position:
                    for index, row in enumerate(rows):
                        row_logits = logits[index, logits.shape[1] - len(row.prompt) :]
                        row.prompt_details = logprobs.prompt(self._namer, row.prompt, row_logits)
                    logits = logits[:, -1]
            self._batch.extend(fresh)
            self._rows.extend(rows)
        except Exception:
            logger.exception("A prefill of %d requests failed", len(rows))
            for row in rows:
                self._finish(row, "error", INTERNAL_FAILURE)
            return
        self._accept_all(rows, logits)

    # Decoding: one forward pass for the whole batch.

    def _decode(self) -> None:
        if not self._rows:
            return
        tokens = torch.tensor([row.last_token for row in self._rows], device=self._base.device)
        try:
            with torch.inference_mode():
                logits = self._batch.decode(tokens)
        except Exception:
            logger.exception("A decode step of %d requests failed", len(self._rows))
            self._fail_batch()
            return
        self._accept_all(self._rows, logits)

    def _accept_all(self, rows: list[_Row], logits: torch.Tensor) -> None:
        greedy = logits.argmax(dim=-1).tolist()  # one call for every plain greedy row
        try:
            allowed = self._grammar_masks(rows, logits.device)
        except Exception:
            logger.exception("The grammar masks of a step failed")
            for row in rows:
                if row.grammar is not None and not row.done:
                    self._finish(row, "error", INTERNAL_FAILURE)
            allowed = {}
        chosen: dict[int, int] = {}  # row index → token
        scored: dict[int, torch.Tensor] = {}  # what the rows that asked for logprobs chose from
        for index, row in enumerate(rows):
            if row.done:
                continue
            try:
                if row.params.temperature == 0 and not row.params.shapes_logits:
                    chosen[index] = greedy[index]
                    scores = logits[index]
                else:
                    scores = row.sampler.scores(logits[index], allowed.get(index))
                    chosen[index] = row.sampler.choose(scores)
                if row.params.logprobs:
                    scored[index] = scores
            except Exception:
                logger.exception("Request %s failed while sampling", row.job.request.id)
                self._finish(row, "error", INTERNAL_FAILURE)
        details = self._token_details(rows, chosen, scored)
        for index, token in chosen.items():
            row = rows[index]
            if row.done:
                continue
            try:
                self._accept(row, token, details.get(index))
            except Exception:
                logger.exception("Request %s failed while decoding", row.job.request.id)
                self._finish(row, "error", INTERNAL_FAILURE)
        self._compact()

    def _token_details(
        self, rows: list[_Row], chosen: dict[int, int], scored: dict[int, torch.Tensor]
    ) -> dict[int, TokenInfo]:
        """The chosen tokens' details for the rows that asked, computed for them together."""
        asked = [index for index in scored if index in chosen]
        if not asked:
            return {}
        try:
            infos = logprobs.chosen(
                self._namer,
                [scored[index] for index in asked],
                [chosen[index] for index in asked],
                [rows[index].params.top_logprobs for index in asked],
            )
        except Exception:
            logger.exception("The log-probabilities of a step failed")
            for index in asked:
                self._finish(rows[index], "error", INTERNAL_FAILURE)
            return {}
        return dict(zip(asked, infos))

    def _grammar_masks(self, rows: list[_Row], device: torch.device) -> dict[int, torch.Tensor]:
        """Each constrained row's allowed next tokens, by row index: one parallel call."""
        constrained = [i for i, row in enumerate(rows) if row.grammar is not None and not row.done]
        if not constrained:
            return {}
        closing = [rows[i].near_limit for i in constrained]
        masks = self._grammar_tokenizer.masks([rows[i].grammar for i in constrained], closing)
        masks = masks.to(device)
        return dict(zip(constrained, masks))

    def _accept(self, row: _Row, token_id: int, details: TokenInfo | None = None) -> None:
        row.completion_tokens += 1
        row.last_token = token_id
        row.sampler.record(token_id)
        if row.grammar is not None:
            row.grammar.consume(token_id)
        if row.job.cancelled:
            self._finish(row, "cancelled")
            return
        if token_id in self._base.stop_token_ids and not row.params.ignore_eos:
            self._send(row, self._held_text(row))
            if details is not None:
                row.unsent_tokens.append(details)  # listed at the end, as LoRAX lists it
            self._finish(row, "stop")
            return
        if details is not None:
            details = self._texts_in_context(row, details)
        piece = row.detokenizer.push(token_id)
        row.unsent_token_ids.append(token_id)
        if details is not None:
            row.unsent_tokens.append(replace(details, text=piece))
        text, stopped = row.stops.push(piece)
        if stopped:
            self._send(row, text)
            self._finish(row, "stop", stop_sequence=True)
        elif row.grammar is not None and row.grammar.complete:
            # Nothing but an end token may follow: end now, without a step to sample it. Closed
            # because the limit was near, it was cut short, however well it parses.
            self._send(row, text + self._held_text(row))
            self._finish(row, "length" if row.grammar.steered else "stop")
        elif row.completion_tokens >= row.params.max_new_tokens:
            self._send(row, text + self._held_text(row))
            self._finish(row, "length")
        else:
            self._send(row, text)

    def _texts_in_context(self, row: _Row, details: TokenInfo) -> TokenInfo:
        """Alternatives' texts as they would read here (a SentencePiece word keeps its space);
        the chosen token's is what it added to the answer (set by the caller)."""
        plain = [alt for alt in details.top if not alt.special]
        if not plain:
            return details
        texts = iter(row.detokenizer.peek([alt.id for alt in plain]))
        top = tuple(alt if alt.special else replace(alt, text=next(texts)) for alt in details.top)
        return replace(details, top=top)

    def _held_text(self, row: _Row) -> str:
        """Text held back for a possible stop string or an unfinished character."""
        text, stopped = row.stops.push(row.detokenizer.flush())
        return text if stopped else text + row.stops.flush()

    def _send(self, row: _Row, text: str) -> None:
        if not text:
            return
        if row.first_delta_at is None:
            row.first_delta_at = time.monotonic()
        delta = TextDelta(
            text, row.deltas_sent, tuple(row.unsent_token_ids), tuple(row.unsent_tokens)
        )
        row.deltas_sent += 1
        row.unsent_token_ids.clear()
        row.unsent_tokens.clear()
        self._emit(row.job, delta)

    def _compact(self) -> None:
        """Take finished rows out of the batch now, so the next step does not compute them."""
        if not any(row.done for row in self._rows):
            return
        keep = [index for index, row in enumerate(self._rows) if not row.done]
        self._batch.keep(keep)
        self._rows = [self._rows[index] for index in keep]

    def _fail_batch(self) -> None:
        for row in self._rows:
            if not row.done:
                self._finish(row, "error", INTERNAL_FAILURE)
        self._rows = []
        self._batch = Batch(self._base.model, self._layers.context, self._base.device)

    # Endings. Every request gets exactly one Finished.

    def _finish(
        self, row: _Row, reason: FinishReason, failure: Failed | None = None,
        stop_sequence: bool = False,
    ) -> None:
        row.done = True
        self._adapters.release(row.job.request.adapter)
        job = row.job
        ttft_ms = None
        if row.first_delta_at is not None:
            ttft_ms = (row.first_delta_at - job.submitted_at) * 1000
        if failure:
            self._emit(job, failure)
        self._forget(job)
        finished = Finished(
            reason, len(row.prompt), row.completion_tokens, ttft_ms, _ms_since(job.submitted_at),
            tokens=tuple(row.unsent_tokens), prompt=row.prompt_details,
            stop_sequence=stop_sequence,
        )
        self._emit(job, finished)

    def _end_early(self, job: _Job, failure: Failed | None) -> None:
        """End a request that never reached the model: refused, unable to start, or cancelled."""
        if failure:
            self._emit(job, failure)
        self._forget(job)
        reason: FinishReason = "error" if failure else "cancelled"
        self._emit(job, Finished(reason, 0, 0, None, _ms_since(job.submitted_at)))

    def _forget(self, job: _Job) -> None:
        with self._wakeup:
            if self._jobs.get(job.request.id) is job:
                del self._jobs[job.request.id]

    def _shut_down(self) -> None:
        self._end_unstarted()
        for row in self._rows:
            if not row.done:
                self._finish(row, "cancelled")
        self._rows = []
        with self._wakeup:
            queued, self._queue = list(self._queue), deque()
            commands, self._commands = self._commands, deque()
        for job in queued:
            self._end_early(job, None)
        for _, future in commands:
            future.set_exception(RuntimeError("The engine is closed."))

    def _emit(self, job: _Job, event: Event) -> None:
        try:
            job.sink(event)
        except Exception:
            # A broken sink must not stop the engine; nobody is listening, so stop generating.
            logger.exception("The event sink of request %s failed", job.request.id)
            job.cancelled = True


def _check_params(params: SamplingParams) -> None:
    if params.max_new_tokens < 1:
        raise InferenceError("invalid_request", "max_new_tokens must be at least 1.")
    if params.temperature < 0:
        raise InferenceError("invalid_request", "temperature must not be negative.")
    if not 0 < params.top_p <= 1:
        raise InferenceError("invalid_request", "top_p must be greater than 0 and at most 1.")
    if params.top_k < 0:
        raise InferenceError("invalid_request", "top_k must not be negative.")
    if params.repetition_penalty <= 0:
        raise InferenceError("invalid_request", "repetition_penalty must be greater than 0.")
    if not 0 <= params.top_logprobs <= logprobs.MAX_TOP_LOGPROBS:
        raise InferenceError(
            "invalid_request", f"top_logprobs must be 0 to {logprobs.MAX_TOP_LOGPROBS}."
        )


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000
