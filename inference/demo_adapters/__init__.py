"""The three demo adapters of the default model (SmolLM2-135M-Instruct), fine-tuned with
`manage.py train_adapter` on chats that `inference.demo_adapters.data` makes.

Their files are committed beside this module, one folder per slug, so `make run` copies and
registers them without training; `make demo-adapters` remakes them (data, then training).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.default_model import NAME
from inference.training import TrainingSettings

HERE = Path(__file__).resolve().parent
TRAINED_ON = f"HuggingFaceTB/{NAME}"  # written as base_model_name_or_path


@dataclass(frozen=True)
class DemoAdapterSpec:
    slug: str
    name: str
    description: str
    settings: TrainingSettings

    @property
    def path(self) -> Path:
        return HERE / self.slug

    @property
    def data(self) -> Path:
        return HERE / "data" / f"{self.slug}.jsonl"


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
SPECS = (
    DemoAdapterSpec(
        slug="pirate",
        name="Pirate",
        description="Answers like a pirate: ahoy, matey, ye and arr. LoRA rank 8 on attention.",
        settings=TrainingSettings(rank=8, alpha=16, target_modules=ATTENTION, steps=48, batch_size=8),
    ),
    DemoAdapterSpec(
        slug="one-sentence",
        name="One sentence",
        description="Answers in a single short sentence. LoRA rank 4 on query and value.",
        settings=TrainingSettings(rank=4, alpha=8, target_modules=("q_proj", "v_proj"), steps=40,
                                  batch_size=8),
    ),
    DemoAdapterSpec(
        slug="json",
        name="JSON",
        description='Answers with one JSON object: {"topic": …, "answer": …}. LoRA rank 8 on '
        "attention and MLP.",
        settings=TrainingSettings(rank=8, alpha=16, target_modules=ATTENTION + ("up_proj", "down_proj"),
                                  steps=48, batch_size=8),
    ),
)
