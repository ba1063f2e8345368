"""The PEFT engine: one base model, LoRA adapters swapped per request, one decode thread.

See docs/ARCHITECTURE.md, "Engine". Callers `submit` requests from any thread; a single daemon
thread owns the model. Each turn of its loop it admits queued requests, then moves every active
request forward by one token, in turn, each with its own KV cache and its own adapter. This
simple scheduler runs one sequence per forward pass; a batched multi-adapter one can replace it
behind the same `Engine` interface. Every sink call happens on the engine thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from inference.adapters import LoadedAdapters
from inference.detok import IncrementalDetokenizer
from inference.errors import InferenceError
from inference.model import BaseModel, load_base_model
from inference.sampling import Sampler
from inference.stops import StopMatcher
from inference.types import (
    Event,
    EventSink,
    Failed,
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    Started,
    TextDelta,
)

logger = logging.getLogger(__name__)

INTERNAL_FAILURE = Failed("internal", "The request failed inside the engine; it has been logged.")


@dataclass(eq=False)
class _Job:
    """A submitted request, from `submit` until its `Finished` event."""

    request: GenerationRequest
    sink: EventSink
    submitted_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False


@dataclass(eq=False)
class _Generation:
    """An admitted request's decoding state. Only the engine thread touches it."""

    job: _Job
    prompt_tokens: int
    next_input: torch.Tensor  # the whole prompt at first, then the last sampled token
    sampler: Sampler
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    cache: Any = None  # the model's past_key_values
    completion_tokens: int = 0
    deltas_sent: int = 0
    unsent_token_ids: list[int] = field(default_factory=list)
    first_delta_at: float | None = None


class PeftEngine:
    def __init__(
        self,
        base_model: str,
        *,
        device: str | None = None,
        max_active: int = 16,
        max_queued: int = 256,
    ):
        self._base: BaseModel = load_base_model(base_model, device=device)
        self._adapters = LoadedAdapters(self._base.model, self._base.device)
        self._max_active = max_active
        self._max_queued = max_queued
        self._wakeup = threading.Condition()
        # Shared with callers' threads, guarded by self._wakeup:
        self._queue: deque[_Job] = deque()
        self._jobs: dict[str, _Job] = {}  # queued or active, by request id
        # Requests that end before reaching the model (refused, or cancelled while queued): the
        # engine thread answers them, so that sinks are only ever called from that thread.
        self._unstarted: list[tuple[_Job, Failed | None]] = []
        self._closed = False
        # Engine thread only:
        self._active: list[_Generation] = []
        self._thread = threading.Thread(target=self._run, name="patchbay-engine", daemon=True)
        self._thread.start()

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

    def _refusal(self, request: GenerationRequest) -> Failed | None:
        if request.id in self._jobs:
            return Failed(
                "invalid_request", f"A request with id {request.id!r} is already running."
            )
        if len(self._queue) >= self._max_queued:
            return Failed("overloaded", "The server is busy; please try again in a moment.")
        return None

    # The decode loop.

    def _run(self) -> None:
        while self._wait_for_work():
            self._end_unstarted()
            self._admit()
            for generation in list(self._active):
                self._advance(generation)
        self._shut_down()

    def _wait_for_work(self) -> bool:
        with self._wakeup:
            while not (self._closed or self._queue or self._unstarted or self._active):
                self._wakeup.wait()
            return not self._closed

    def _end_unstarted(self) -> None:
        with self._wakeup:
            unstarted, self._unstarted = self._unstarted, []
        for job, failure in unstarted:
            self._end_early(job, failure)

    def _admit(self) -> None:
        while len(self._active) < self._max_active:
            with self._wakeup:
                if not self._queue:
                    return
                job = self._queue.popleft()
            try:
                self._active.append(self._start(job))
            except InferenceError as error:
                self._end_early(job, Failed(error.code, error.message))
            except Exception:
                logger.exception("Could not start request %s", job.request.id)
                self._end_early(job, INTERNAL_FAILURE)

    def _start(self, job: _Job) -> _Generation:
        params = job.request.params
        _check_params(params)
        prompt = self._base.encode(job.request)
        if not prompt:
            raise InferenceError("invalid_request", "The prompt is empty.")
        self._check_fits_context(len(prompt), params.max_new_tokens)
        if job.request.adapter is not None:
            self._adapters.load(job.request.adapter)
        self._emit(job, Started(prompt_tokens=len(prompt)))
        return _Generation(
            job=job,
            prompt_tokens=len(prompt),
            next_input=torch.tensor([prompt], device=self._base.device),
            sampler=Sampler(params),
            detokenizer=IncrementalDetokenizer(self._base.tokenizer),
            stops=StopMatcher(params.stop),
        )

    def _check_fits_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self._base.max_positions
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            raise InferenceError(
                "context_too_long",
                f"The prompt has {prompt_tokens} tokens and up to {max_new_tokens} more were "
                f"asked for, but this model reads at most {limit} tokens in all.",
            )

    def _advance(self, generation: _Generation) -> None:
        if generation.job.cancelled:
            self._finish(generation, "cancelled")
            return
        try:
            token_id = self._next_token(generation)
            self._accept(generation, token_id)
        except Exception:
            logger.exception("Request %s failed while decoding", generation.job.request.id)
            self._finish(generation, "error", INTERNAL_FAILURE)

    def _next_token(self, generation: _Generation) -> int:
        extra = {"logits_to_keep": 1} if self._base.accepts_logits_to_keep else {}
        adapter = generation.job.request.adapter
        with torch.inference_mode(), self._adapters.activated(adapter) as model:
            output = model(
                input_ids=generation.next_input,
                past_key_values=generation.cache,
                use_cache=True,
                **extra,
            )
            generation.cache = output.past_key_values
            return generation.sampler(output.logits[0, -1])

    def _accept(self, generation: _Generation, token_id: int) -> None:
        generation.completion_tokens += 1
        if token_id in self._base.stop_token_ids:
            self._send(generation, self._held_text(generation))
            self._finish(generation, "stop")
            return
        generation.unsent_token_ids.append(token_id)
        text, stopped = generation.stops.push(generation.detokenizer.push(token_id))
        if stopped:
            self._send(generation, text)
            self._finish(generation, "stop")
        elif generation.completion_tokens >= generation.job.request.params.max_new_tokens:
            self._send(generation, text + self._held_text(generation))
            self._finish(generation, "length")
        else:
            self._send(generation, text)
            generation.next_input = torch.tensor([[token_id]], device=self._base.device)

    def _held_text(self, generation: _Generation) -> str:
        """Text held back for a possible stop string or an unfinished character."""
        text, stopped = generation.stops.push(generation.detokenizer.flush())
        return text if stopped else text + generation.stops.flush()

    def _send(self, generation: _Generation, text: str) -> None:
        if not text:
            return
        if generation.first_delta_at is None:
            generation.first_delta_at = time.monotonic()
        delta = TextDelta(text, generation.deltas_sent, tuple(generation.unsent_token_ids))
        generation.deltas_sent += 1
        generation.unsent_token_ids.clear()
        self._emit(generation.job, delta)

    # Endings. Every request gets exactly one Finished.

    def _finish(
        self, generation: _Generation, reason: FinishReason, failure: Failed | None = None
    ) -> None:
        self._active.remove(generation)
        generation.cache = None  # free the KV cache now, not when the last reference goes
        job = generation.job
        ttft_ms = None
        if generation.first_delta_at is not None:
            ttft_ms = (generation.first_delta_at - job.submitted_at) * 1000
        if failure:
            self._emit(job, failure)
        self._forget(job)
        finished = Finished(
            reason,
            generation.prompt_tokens,
            generation.completion_tokens,
            ttft_ms,
            _ms_since(job.submitted_at),
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
        for generation in list(self._active):
            self._finish(generation, "cancelled")
        with self._wakeup:
            queued, self._queue = list(self._queue), deque()
        for job in queued:
            self._end_early(job, None)

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


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000
