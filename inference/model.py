"""Loading the base model and its tokenizer, and turning a request into prompt token ids.

The same path serves the demo model and real ones (a local Llama, Mistral or Qwen directory, or
a hub id when the machine may download).
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inference.errors import InferenceError
from inference.quantization import quantize_base
from inference.types import GenerationRequest


@dataclass(frozen=True)
class BaseModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    max_positions: int | None  # the longest prompt + answer the model can read, when known
    stop_token_ids: frozenset[int]  # end-of-sequence and end-of-turn tokens
    quantization: str = "none"  # of the base weights (inference.quantization)

    def encode(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids: chat messages through the chat template, or the raw prompt."""
        if request.messages:
            return self._encode_messages(request)
        if request.prompt:
            return self.tokenizer(request.prompt).input_ids
        raise InferenceError("invalid_request", "The request has neither messages nor a prompt.")

    def _encode_messages(self, request: GenerationRequest) -> list[int]:
        text = render_chat(self.tokenizer, request)
        # The template already writes the special tokens (such as <s>) that the model expects.
        return self.tokenizer(text, add_special_tokens=False).input_ids


def render_chat(tokenizer: PreTrainedTokenizerBase, request: GenerationRequest) -> str:
    """The request's chat messages as one prompt string, through the model's chat template
    (also what a LoRAX server is sent: it takes a prompt string, not messages)."""
    if not tokenizer.chat_template:
        raise InferenceError(
            "invalid_request",
            "This base model has no chat template; send a raw prompt instead.",
        )
    messages = [{"role": turn.role, "content": turn.content} for turn in request.messages]
    try:
        return tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=not request.continue_final_message,
            continue_final_message=request.continue_final_message,
        )
    except jinja2.TemplateError as error:
        # Templates reject what their model cannot take, e.g. Mistral's wants no system turn.
        raise InferenceError(
            "invalid_request", f"The chat template refused these messages: {error}"
        ) from error


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base_model(
    name_or_path: str, *, device: str | None = None, quantization: str = "none"
) -> BaseModel:
    """Load weights and tokenizer once: bfloat16 on a GPU, float32 on the CPU, in eval mode;
    `quantization` "int8": the Linear weights as int8 (inference.quantization)."""
    target = pick_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(target).eval()
    quantize_base(model, quantization, target)
    return BaseModel(
        model=model,
        tokenizer=tokenizer,
        device=target,
        max_positions=getattr(model.config.get_text_config(), "max_position_embeddings", None),
        stop_token_ids=_stop_token_ids(model, tokenizer),
        quantization=quantization,
    )


def _stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    # Chat models often end a turn with a token other than the tokenizer's eos (<|eot_id|>,
    # <|im_end|>); generation_config lists them all.
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = []
    elif isinstance(configured, int):
        configured = [configured]
    ids = set(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)
