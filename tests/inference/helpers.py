"""Small tools for driving an engine from a test: a sink that records, and request builders."""

from __future__ import annotations

import itertools
import threading

from inference.targeting import peft_lora_config
from inference.types import (
    AdapterRef,
    ChatTurn,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    SamplingParams,
    Started,
    TextDelta,
)

QUESTION = (ChatTurn("system", "you are kind."), ChatTurn("user", "tell me about the river."))
_ids = itertools.count()


def chat(adapter: AdapterRef | None = None, **params) -> GenerationRequest:
    """A chat request with a fresh id; greedy unless the test says otherwise."""
    params.setdefault("temperature", 0.0)
    params.setdefault("max_new_tokens", 12)
    return GenerationRequest(
        id=f"request-{next(_ids)}", messages=QUESTION, adapter=adapter, params=SamplingParams(**params)
    )


class Stream:
    """An event sink that records everything one request receives."""

    def __init__(self):
        self.events: list[Event] = []
        self.finished = threading.Event()
        self.got_text = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, TextDelta):
            self.got_text.set()
        if isinstance(event, Finished):
            self.finished.set()

    def wait(self, timeout: float = 30) -> Stream:
        assert self.finished.wait(timeout), f"no Finished within {timeout} s: {self.events}"
        return self

    @property
    def deltas(self) -> list[TextDelta]:
        return [event for event in self.events if isinstance(event, TextDelta)]

    @property
    def text(self) -> str:
        return "".join(delta.text for delta in self.deltas)

    @property
    def token_ids(self) -> list[int]:
        return [token for delta in self.deltas for token in delta.token_ids]

    @property
    def started(self) -> Started | None:
        return next((event for event in self.events if isinstance(event, Started)), None)

    @property
    def failure(self) -> Failed | None:
        return next((event for event in self.events if isinstance(event, Failed)), None)

    @property
    def finish(self) -> Finished:
        finished = [event for event in self.events if isinstance(event, Finished)]
        assert len(finished) == 1, self.events
        assert self.events[-1] is finished[0], "events after Finished"
        return finished[0]


def run(engine, request: GenerationRequest) -> Stream:
    """Submit and wait for the end."""
    stream = Stream()
    engine.submit(request, stream)
    return stream.wait()


def module_names(model) -> list[str]:
    """The names PEFT matches an adapter's targets against (before it wraps anything)."""
    return [name for name, _ in model.named_modules()]


def reference_text(model_dir, messages=QUESTION, *, adapter_path=None, max_new_tokens: int = 12) -> str:
    """The greedy answer from plain transformers (and PEFT), to check the engine against."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if adapter_path is not None:
        config = peft_lora_config(adapter_path, module_names(model))
        model = PeftModel.from_pretrained(model, adapter_path, config=config)
    turns = [{"role": turn.role, "content": turn.content} for turn in messages]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    output = model.generate(input_ids=prompt, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True)


# Test adapters on the demo base model: different ranks and target-module sets.
TEST_ADAPTER_SPECS = {
    "r2-qv": (2, ("q_proj", "v_proj")),
    "r8-attn": (8, ("q_proj", "k_proj", "v_proj", "o_proj")),
    "r16-all": (16, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    "r4-mlp": (4, ("gate_proj", "up_proj", "down_proj")),
    "r32-ko": (32, ("k_proj", "o_proj")),
}


def make_test_adapters(base_dir, directory) -> dict[str, AdapterRef]:
    """Write the TEST_ADAPTER_SPECS adapters for the demo base model into `directory`."""
    from transformers import AutoModelForCausalLM

    from inference.synthetic import save_random_adapter

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    refs = {}
    for seed, (name, (rank, targets)) in enumerate(TEST_ADAPTER_SPECS.items()):
        path = save_random_adapter(model, directory / name, rank=rank, targets=targets, seed=seed, std=0.2)
        refs[name] = AdapterRef(name, str(path))
    return refs


class PeftReference:
    """Plain PEFT on transformers, one request at a time: what every batch row must equal."""

    def __init__(self, model_dir, adapters: dict[str, AdapterRef]):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        first, *others = adapters.values()
        names = module_names(base)
        config = peft_lora_config(first.path, names)
        self.model = PeftModel.from_pretrained(base, first.path, adapter_name=first.name, config=config)
        for ref in others:
            self.model.add_adapter(ref.name, peft_lora_config(ref.path, names))
            self.model.load_adapter(ref.path, adapter_name=ref.name)  # the weights, into that config
        self.model.eval()

    def completion(self, prompt: str, adapter: AdapterRef | None, max_new_tokens: int) -> list[int]:
        """The greedy completion's token ids, the end token included when it came."""
        import contextlib

        import torch

        ids = torch.tensor([self.tokenizer(prompt).input_ids])
        if adapter is None:
            context = self.model.disable_adapter()
        else:
            self.model.set_adapter(adapter.name)
            context = contextlib.nullcontext()
        with context, torch.inference_mode():
            output = self.model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)
        return output[0, ids.shape[1]:].tolist()
