"""Remake the demo adapters: their training chats, then `manage.py train_adapter` for each with
the settings in `inference.demo_adapters.SPECS`, writing the committed folders.

    python -m inference.demo_adapters.train [--base-model DIR] [--only SLUG] [--keep-data]

Measured on the 2-CPU development machine: 3 minutes for the data and 75 to 130 s per adapter.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from inference.default_model import DIR_NAME
from inference.demo_adapters import SPECS, TRAINED_ON
from inference.demo_adapters.data import write_training_files

ROOT = Path(__file__).resolve().parents[2]


def train(spec, base_model: str) -> None:
    settings = spec.settings
    command = [
        sys.executable, "manage.py", "train_adapter", str(spec.data), "--slug", spec.slug,
        "--base-model", base_model, "--trained-on", TRAINED_ON, "--no-register",
        "--output", str(spec.path), "--rank", str(settings.rank), "--alpha", str(settings.alpha),
        "--targets", ",".join(settings.target_modules), "--steps", str(settings.steps),
        "--batch-size", str(settings.batch_size), "--learning-rate", str(settings.learning_rate),
        "--max-tokens", str(settings.max_tokens), "--seed", str(settings.seed),
    ]
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default=str(ROOT / "var" / "models" / DIR_NAME))
    parser.add_argument("--only", choices=[spec.slug for spec in SPECS])
    parser.add_argument("--keep-data", action="store_true", help="train on the chats already made")
    args = parser.parse_args(argv)
    if not args.keep_data:
        write_training_files(args.base_model)
    for spec in SPECS:
        if args.only in (None, spec.slug):
            train(spec, args.base_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
