"""bench/engine.py: runs end to end and ends with one JSON object carrying the named keys."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"mixed_over_same", "mixed_over_sequential", "mixed_over_peft", "ttft_p95_over_floor", "adapter_load_ms", "model_params"}


def test_it_prints_the_ratios_as_json_on_its_last_line():
    command = [sys.executable, "bench/engine.py", "--quick", "--json", "--shape", "tiny", "--skip-demo",
               "--batch", "2", "--new-tokens", "4", "--rank", "4", "--threads", "1"]

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert KEYS <= set(summary)
    assert summary["model_params"] > 0 and summary["adapter_load_ms"] > 0
    assert all(summary[key] > 0 for key in KEYS)


def test_it_measures_any_model_directory_against_plain_transformers(demo_model):
    command = [sys.executable, "bench/engine.py", "--quick", "--json", "--model", str(demo_model.base_dir),
               "--batch", "2", "--new-tokens", "4", "--rank", "4", "--threads", "1"]

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    measured = summary["models"][demo_model.base_dir.name]
    assert set(summary["models"]) == {demo_model.base_dir.name}  # no generated or demo runs
    assert measured["tokens_per_s"]["f_transformers_base"] > 0
    assert measured["base_over_transformers"] > 0
