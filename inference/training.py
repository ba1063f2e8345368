"""Fine-tuning a LoRA adapter on chats with PEFT: what `manage.py train_adapter` runs.

The data is JSONL, one `{"messages": [{"role": …, "content": …}, …]}` per line (the format
chat exports and OpenAI fine-tuning use). Each chat is rendered with the base model's own chat
template and the loss covers only its last assistant turn, end-of-turn token included, so the
adapter learns what to answer and where to stop, not to repeat prompts.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROLES = ("system", "user", "assistant")
IGNORE = -100  # the label that cross-entropy skips


class TrainingError(Exception):
    """Bad training data or settings; the message names the line or the setting."""


@dataclass(frozen=True)
class TrainingSettings:
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    steps: int = 60
    batch_size: int = 8
    learning_rate: float = 2e-3
    max_tokens: int = 192  # a longer chat is cut from the left, keeping its answer
    seed: int = 0

    def __post_init__(self):
        for name in ("rank", "alpha", "steps", "batch_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if not 0 < self.learning_rate < 1:
            raise TrainingError(f"learning_rate must be between 0 and 1, not {self.learning_rate}.")
        if not self.target_modules:
            raise TrainingError("target_modules names no module.")


@dataclass
class Progress:
    """What a progress display is told after each step."""

    step: int
    steps: int
    loss: float
    elapsed_s: float


@dataclass
class TrainingResult:
    path: Path
    examples: int
    first_loss: float
    last_loss: float
    seconds: float


def read_chats(path: Path) -> list[list[dict]]:
    """The chats of a JSONL file; the first bad line stops it with its number and why."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingError(f"Could not read {path}: {error}") from None
    return chats_from_lines(lines, str(path))


def chats_from_lines(lines: list[str], where: str, *, need_answer: bool = True) -> list[list[dict]]:
    """The chats of JSONL lines (chat exports read them too, with `need_answer` false: a chat
    may end on a question there)."""
    chats = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            chats.append(_chat(line, f"{where}, line {number}", need_answer))
    if not chats:
        raise TrainingError(f"{where} holds no chats.")
    return chats


def _chat(line: str, where: str, need_answer: bool = True) -> list[dict]:
    try:
        record = json.loads(line)
    except ValueError:
        raise TrainingError(f"{where}: not valid JSON.") from None
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TrainingError(f'{where}: expected {{"messages": [...]}} with at least one message.')
    for message in messages:
        if not (isinstance(message, dict) and message.get("role") in ROLES
                and isinstance(message.get("content"), str)):
            raise TrainingError(
                f"{where}: each message needs a role ({', '.join(ROLES)}) and a string content."
            )
    if need_answer and (messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip()):
        raise TrainingError(f"{where}: the last message must be a non-empty assistant answer.")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def encode_chat(tokenizer, messages: list[dict], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and labels: the labels are IGNORE everywhere but the last assistant turn."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    if not full.startswith(prompt):
        raise TrainingError("The chat template renders an answer that does not extend its prompt.")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False).input_ids
    ids = (prompt_ids + answer_ids)[-max_tokens:]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[-max_tokens:]
    return ids, labels


def train_lora(
    base_model: str,
    chats: list[list[dict]],
    out: Path,
    settings: TrainingSettings,
    *,
    trained_on: str | None = None,
    on_step: Callable[[Progress], None] = lambda progress: None,
) -> TrainingResult:
    """Train a LoRA adapter on `chats` and save it in PEFT's format at `out`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if not tokenizer.chat_template:
        raise TrainingError(f"{base_model} has no chat template to render the chats with.")
    examples = [encode_chat(tokenizer, chat, settings.max_tokens) for chat in chats]
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    model.name_or_path = trained_on or base_model  # written as base_model_name_or_path
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=list(settings.target_modules),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as error:  # e.g. a target module the model does not have
        raise TrainingError(f"PEFT refused these settings: {error}") from None
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(settings.steps))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses = []
    batches = _batches(examples, settings.batch_size, random.Random(settings.seed))
    for step in range(1, settings.steps + 1):
        ids, labels, mask = _padded(next(batches), pad)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise TrainingError(f"The loss became {losses[-1]} at step {step}; lower the learning rate.")
        on_step(Progress(step, settings.steps, losses[-1], time.monotonic() - started))
    model.eval()
    model.save_pretrained(out)
    record = {"settings": asdict(settings), "examples": len(examples), "losses": losses}
    (Path(out) / "training.json").write_text(json.dumps(record, indent=1))
    # PEFT writes a model card of empty placeholders; say what is actually known instead.
    (Path(out) / "README.md").write_text(_model_card(model.name_or_path, settings, len(examples), losses))
    return TrainingResult(
        path=Path(out),
        examples=len(examples),
        first_loss=_mean(losses[:5]),
        last_loss=_mean(losses[-5:]),
        seconds=time.monotonic() - started,
    )


def _model_card(base: str, settings: TrainingSettings, examples: int, losses: list[float]) -> str:
    return (
        f"# LoRA adapter for {base}\n\n"
        f"Trained with Patchbay's `manage.py train_adapter` on {examples} chats: rank {settings.rank}, "
        f"alpha {settings.alpha}, modules {', '.join(settings.target_modules)}, {settings.steps} steps "
        f"of {settings.batch_size}, learning rate {settings.learning_rate}, seed {settings.seed}. "
        f"Loss {_mean(losses[:5]):.3f} over the first five steps, {_mean(losses[-5:]):.3f} over the "
        "last five (training.json has every step).\n"
    )


def _batches(examples: list, size: int, rng: random.Random) -> Iterator[list]:
    """Endless epochs of shuffled examples; each batch holds similar lengths, to pad little."""
    while True:
        order = examples[:]
        rng.shuffle(order)
        chunks = [order[i : i + size * 8] for i in range(0, len(order), size * 8)]
        batches = []
        for chunk in chunks:
            chunk.sort(key=lambda example: len(example[0]))
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        rng.shuffle(batches)
        yield from batches


def _padded(batch: list, pad: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = [row + [pad] * (width - len(row)) for row, _ in batch]
    labels = [row + [IGNORE] * (width - len(row)) for _, row in batch]
    mask = [[1] * len(row) + [0] * (width - len(row)) for row, _ in batch]
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def _cosine(steps: int) -> Callable[[int], float]:
    """A short linear warm-up, then cosine decay to a tenth of the rate."""
    warmup = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    return factor


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
