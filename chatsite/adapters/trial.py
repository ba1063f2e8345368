"""The admin's try-it box: one test prompt through an adapter, streamed, saved nowhere.

It runs on the same engine as every conversation and speaks the same envelopes (engine events
mapped by the answer lifecycle, `chatsite.chat.streams.lifecycle.envelope_of`), but keeps no
rows, so trying an adapter never counts as usage.
Staff may try an adapter before enabling it; it passed validation when it came in.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from django.conf import settings

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_defaults, adapter_ref
from chatsite.chat.streams import envelopes, lifecycle
from chatsite.chat.workers.engine_holder import local_engine
from chatsite.errors import ChatError
from inference.types import ChatTurn, GenerationRequest, SamplingParams

TRIAL_MAX_TOKENS = 64
TRIAL_TIMEOUT_S = 120.0


def trial_request(adapter: Adapter, prompt: str) -> GenerationRequest:
    defaults = adapter_defaults(adapter)
    temperature = SamplingParams().temperature
    if defaults.temperature is not None:
        temperature = defaults.temperature
    return GenerationRequest(
        id=f"admin-trial-{uuid.uuid4().hex}",
        messages=defaults.with_system_prompt((ChatTurn(role="user", content=prompt),)),
        adapter=adapter_ref(adapter),
        params=SamplingParams(
            max_new_tokens=min(defaults.max_tokens or TRIAL_MAX_TOKENS, TRIAL_MAX_TOKENS),
            temperature=temperature,
        ),
    )


async def trial_stream(adapter_slug: str, request: GenerationRequest) -> AsyncIterator[dict]:
    """The envelopes of one generation, as the engine produces them."""
    yield envelopes.start(message=None, conversation=None, adapter=adapter_slug)
    try:
        engine = await asyncio.to_thread(_engine)
    except ChatError as error:
        for envelope in envelopes.rejection(error):
            yield envelope
        return
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    engine.submit(request, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
    try:
        async with asyncio.timeout(TRIAL_TIMEOUT_S):
            while True:
                envelope = lifecycle.envelope_of(await events.get(), message=None)
                if envelope is not None:
                    yield envelope
                    if envelope["type"] == "inference.end":
                        return
    except TimeoutError:
        timeout = ChatError("timeout", f"No answer within {TRIAL_TIMEOUT_S:.0f} seconds.")
        for envelope in envelopes.rejection(timeout):
            yield envelope
    finally:
        engine.cancel(request.id)  # a no-op once finished; stops work when the page went away


def _engine():
    if settings.INFERENCE_MODE != "local":  # never load a model into a web process by accident
        raise ChatError(
            "engine_unavailable",
            "The try-it box uses the engine inside the web process (INFERENCE_MODE=local); "
            f"this server runs INFERENCE_MODE={settings.INFERENCE_MODE}.",
        )
    return local_engine()
