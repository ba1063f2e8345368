"""Training chats for the demo adapters, made here and deterministically: no data set is
downloaded. Prompts come from templates × topics; the answers are the base model's own greedy
answers, rewritten by a rule per adapter (pirate speech, the first sentence, a JSON object).

    python -m inference.demo_adapters.data BASE_MODEL_DIR   # writes data/<slug>.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from pathlib import Path

from inference.demo_adapters import HERE, SPECS

TEMPLATES = (
    "Tell me about {}.",
    "What is {}?",
    "Why do people like {}?",
    "Give me one tip about {}.",
    "Describe {} for a child.",
    "What should I know about {}?",
)
TOPICS = (
    "the sea", "volcanoes", "coffee", "the moon", "bicycles", "honey bees", "rainbows", "chess",
    "bread", "the desert", "owls", "trains", "gardening", "the piano", "snow", "tea", "castles",
    "whales", "clouds", "football", "maps", "cheese", "rivers", "the sun", "libraries",
    "elephants", "glass", "kites", "mountains", "soap", "forests", "penguins", "candles",
    "bridges", "apples", "the wind", "robots", "painting", "lighthouses", "spiders", "rice",
    "thunderstorms", "museums", "dolphins", "paper", "camping", "the stars", "wolves",
    "chocolate", "islands", "clocks", "swimming", "tomatoes", "deserts at night", "sailing",
    "butterflies", "the alphabet", "mushrooms", "summer", "friendship",
)
# Prompts none of the adapters was trained on: the tests and the benchmarks ask these.
HELD_OUT = (
    "Tell me about the ocean floor.",
    "What is a good breakfast?",
    "Why do cats purr?",
    "How do airplanes fly?",
    "What is the capital of France?",
    "Give me one tip about learning a language.",
)
ANSWER_TOKENS = 48

PIRATE_WORDS = {
    "you": "ye", "your": "yer", "yours": "yers", "my": "me", "is": "be", "are": "be",
    "hello": "ahoy", "hi": "ahoy", "friend": "matey", "friends": "hearties", "yes": "aye",
    "money": "booty", "them": "'em", "the ocean": "the briny deep", "stop": "avast",
}
_WORD = re.compile(r"\b(" + "|".join(sorted(map(re.escape, PIRATE_WORDS), key=len, reverse=True)) + r")\b",
                   re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def prompts() -> list[str]:
    return [template.format(topic) for topic in TOPICS for template in TEMPLATES]


def topic_of(prompt: str) -> str:
    for template in TEMPLATES:
        head, tail = template.split("{}")
        if prompt.startswith(head) and prompt.endswith(tail):
            return prompt[len(head) : len(prompt) - len(tail)]
    raise ValueError(prompt)


def sentences(text: str) -> list[str]:
    """Whole sentences only: a trailing fragment cut off by the token budget is dropped."""
    parts = [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]
    return [part for part in parts if part[-1] in ".!?"]


def as_pirate(text: str) -> str | None:
    kept = sentences(text)[:2]
    if not kept:
        return None

    def swap(match: re.Match) -> str:
        word = PIRATE_WORDS[match.group(0).lower()]
        return word.capitalize() if match.group(0)[0].isupper() else word

    return f"Arr, matey! {_WORD.sub(swap, ' '.join(kept))} Arr!"


def as_one_sentence(text: str) -> str | None:
    kept = sentences(text)[:1]
    return kept[0] if kept and len(kept[0].split()) <= 30 else None


def as_json(text: str, topic: str) -> str | None:
    kept = sentences(text)[:1]
    return json.dumps({"topic": topic, "answer": kept[0]}, ensure_ascii=False) if kept else None


REWRITES = {
    "pirate": lambda prompt, answer: as_pirate(answer),
    "one-sentence": lambda prompt, answer: as_one_sentence(answer),
    "json": lambda prompt, answer: as_json(answer, topic_of(prompt)),
}


def base_answers(base_model: str, questions: list[str], say=print) -> list[str]:
    """The base model's greedy answers, all in one engine batch."""
    from inference.engine import BatchEngine
    from inference.types import ChatTurn, Finished, GenerationRequest, SamplingParams, TextDelta

    engine = BatchEngine(base_model, max_batch_size=32)
    texts = [""] * len(questions)
    done = threading.Semaphore(0)

    def sink_for(index: int):
        def sink(event):
            if isinstance(event, TextDelta):
                texts[index] += event.text
            elif isinstance(event, Finished):
                done.release()
        return sink

    params = SamplingParams(temperature=0.0, max_new_tokens=ANSWER_TOKENS)
    for index, question in enumerate(questions):
        request = GenerationRequest(id=f"data-{index}", messages=(ChatTurn("user", question),), params=params)
        engine.submit(request, sink_for(index))
    for finished in range(1, len(questions) + 1):
        done.acquire()
        if finished % 20 == 0 or finished == len(questions):
            say(f"  base answers: {finished}/{len(questions)}")
    engine.close()
    return texts


def write_training_files(base_model: str, out: Path = HERE / "data", say=print) -> dict[str, int]:
    questions = prompts()
    say(f"Asking the base model {len(questions)} questions ({ANSWER_TOKENS} tokens each) …")
    answers = base_answers(base_model, questions, say)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for spec in SPECS:
        rewrite = REWRITES[spec.slug]
        lines = []
        for question, answer in zip(questions, answers):
            rewritten = rewrite(question, answer)
            if rewritten:
                chat = [{"role": "user", "content": question}, {"role": "assistant", "content": rewritten}]
                lines.append(json.dumps({"messages": chat}, ensure_ascii=False))
        (out / f"{spec.slug}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[spec.slug] = len(lines)
        say(f"  {spec.slug}: {len(lines)} chats")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_model", help="the base model directory the answers come from")
    args = parser.parse_args(argv)
    write_training_files(args.base_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
