"""Frames a client may send on /ws/chat/ (docs/PROTOCOL.md §1).

Parsing turns anything malformed into a `ChatError("bad_request", sentence)`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from chatsite.chat.transports import gate
from chatsite.errors import ChatError, field_error

# A row id: what a 64-bit primary key can hold (larger ones overflow SQLite, and PostgreSQL).
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]


class ResponseFormat(BaseModel):
    """What the answer must be: prose ("text"), any JSON object, or JSON that validates
    against `schema` (each API's own shape is mapped to this, chat/transports/request_params.py)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    schema_: dict | None = Field(default=None, alias="schema")


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=4
    )
    # Run to max_tokens past end-of-turn tokens (benchmarks; vLLM's `ignore_eos`, LoRAX's
    # `ignore_eos_token`).
    ignore_eos: bool = False
    # Bounds are OpenAI's (penalties, logit bias) and TGI/LoRAX's (top_k, repetition_penalty).
    top_k: int | None = Field(default=None, ge=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repetition_penalty: float | None = Field(default=None, gt=0)
    # Token id (as JSON object keys are strings) → bias added to its logit.
    logit_bias: dict[TokenId, Bias] | None = Field(default=None, max_length=300)
    response_format: ResponseFormat | None = None


class ChatSend(BaseModel):
    """`parent` names the message to answer from (an explicit null: a new first message, as
    when the first message is edited); left out, the newest message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat.send"]
    conversation: Id | None = None
    content: str
    adapter: str | None = None
    params: GenerationParams = Field(default_factory=GenerationParams)
    parent: Id | None = None

    @property
    def parent_given(self) -> bool:
        return "parent" in self.model_fields_set


class ChatRegenerate(BaseModel):
    """A new answer to the user message that assistant `message` answers: a sibling of it.
    `adapter` as in chat.send (null: the conversation's, "": the base)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat.regenerate"]
    message: Id
    adapter: str | None = None
    params: GenerationParams = Field(default_factory=GenerationParams)


class ChatContinue(BaseModel):
    """Extend assistant `message` (stopped, interrupted or cut at the length limit) in place."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat.continue"]
    message: Id
    params: GenerationParams = Field(default_factory=GenerationParams)


class ChatStop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["chat.stop"]
    message: Id


class ChatFollow(BaseModel):
    """Follow a generation from the event after `resume` (the last sequence number seen;
    null for all): how a reloaded page or a reconnected socket picks up a live answer."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat.follow"]
    message: Id
    resume: int | None = Field(default=None, ge=-1, le=2**63 - 1)


FRAME_TYPES = ("chat.send", "chat.stop", "chat.follow", "chat.regenerate", "chat.continue")
AnyFrame = Union[ChatSend, ChatStop, ChatFollow, ChatRegenerate, ChatContinue]
Frame = Annotated[AnyFrame, Field(discriminator="type")]
_frame = TypeAdapter(Frame)


def parse_frame(text: str | None) -> AnyFrame:
    if text is None:
        raise ChatError("bad_request", "Frames must be JSON text, not binary.")
    data = gate.loads(text, what="That frame")
    if not isinstance(data, dict) or data.get("type") not in FRAME_TYPES:
        raise ChatError(
            "bad_request", f"Send a JSON object whose type is one of {', '.join(FRAME_TYPES)}."
        )
    try:
        return _frame.validate_python(data)
    except ValidationError as exc:
        raise frame_error(exc) from None


def frame_error(exc: ValidationError) -> ChatError:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"][1:] or err["loc"])
    return field_error(where, f"{err['msg']}.")


# --- outbound: the envelopes every transport sends (built by envelopes.py) ---------------------
# Declared here, beside the frames a client sends, so a client author reads both in one place;
# tests validate every envelope a transport sends against them (tests/chat/test_envelope_types.py).
class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


MessageRef = Id | None  # None only for an answer that is no row (a refusal, the try-it box)


class TokenDetail(_Payload):
    id: int
    text: str
    logprob: float | None
    special: bool
    top: list["TokenDetail"] | None = None


class StartPayload(_Payload):
    message: MessageRef
    conversation: MessageRef
    adapter: str | None
    parent: MessageRef = None


class TokenPayload(_Payload):
    message: MessageRef
    text: str
    index: Annotated[int, Field(ge=0)]
    tokens: list[TokenDetail] | None = None


class Usage(_Payload):
    prompt_tokens: Annotated[int, Field(ge=0)]
    completion_tokens: Annotated[int, Field(ge=0)]


class Timings(_Payload):
    ttft_ms: float | None
    total_ms: float | None


# Message.Status values an ended answer can have (never a live one).
EndStatus = Literal["complete", "stopped", "interrupted", "error"]
EndReason = Literal["stop", "length", "timeout", "cancelled", "interrupted", "error"]


class EndPayload(_Payload):
    message: MessageRef
    reason: EndReason
    status: EndStatus
    usage: Usage
    timings: Timings
    tokens: list[TokenDetail] | None = None
    prefill: list[TokenDetail] | None = None
    stop_sequence: Literal[True] | None = None


class ErrorPayload(_Payload):
    code: str
    message: str
    message_id: MessageRef


class NoticePayload(ErrorPayload):
    message_id: Id
    resumed: bool


class StartEnvelope(_Payload):
    type: Literal["inference.start"]
    payload: StartPayload


class TokenEnvelope(_Payload):
    type: Literal["inference.token"]
    payload: TokenPayload


class EndEnvelope(_Payload):
    type: Literal["inference.end"]
    payload: EndPayload


class ErrorEnvelope(_Payload):
    type: Literal["inference.error"]
    payload: ErrorPayload


class NoticeEnvelope(_Payload):
    type: Literal["inference.notice"]
    payload: NoticePayload


Envelope = Annotated[
    Union[StartEnvelope, TokenEnvelope, EndEnvelope, ErrorEnvelope, NoticeEnvelope],
    Field(discriminator="type"),
]
_envelope = TypeAdapter(Envelope)


def validate_envelope(envelope: dict) -> None:
    """Raise ValidationError unless `envelope` is one of the declared envelopes, exactly."""
    _envelope.validate_python(envelope)
