"""Small tools for driving an engine from a test: a sink that records, and request builders."""

from __future__ import annotations

import itertools
import threading

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


def reference_text(model_dir, messages=QUESTION, *, adapter_path=None, max_new_tokens: int = 12) -> str:
    """The greedy answer from plain transformers (and PEFT), to check the engine against."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if adapter_path is not None:
        model = PeftModel.from_pretrained(model, adapter_path)
    turns = [{"role": turn.role, "content": turn.content} for turn in messages]
    text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    output = model.generate(input_ids=prompt, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True)
