"""Settings come from the environment; a bad value stops start-up naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatsite.env import Environment

ROOT = Path(__file__).resolve().parents[2]
OLD_NAMES = {"API_MAX_CONCURRENT": "MAX_LIVE_ANSWERS", "API_RATE_LIMIT": "RATE_LIMIT"}


def manage(*args, **env) -> subprocess.CompletedProcess:
    # A fresh machine: none of the product's variables set, except those the test gives.
    ours = set(Environment.model_fields) | {"DJANGO_SETTINGS_MODULE", *OLD_NAMES}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("INFERENCE_MODE", "gpu-please"),
        ("DEBUG", "maybe"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("STREAM_RESUME_GRACE_S", "-1"),
        ("MAX_PROMPT_CHARS", "0"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("SECRET_KEY", "short"),
        ("ADAPTER_MAX_RANK", "0"),
        ("METRICS_TOKEN", "short"),
        ("WORKER_METRICS_PORT", "0"),
        ("ADAPTER_MAX_RANK", "sixty-four"),
        ("ADAPTER_MAX_BYTES", "2GiB"),
        ("TRUSTED_PROXIES", "the-proxy"),
        ("MAX_LIVE_ANSWERS", "0"),
        ("RATE_LIMIT", "lots"),
        ("EMAIL_URL", "pop3://mail.example"),
        ("EMAIL_URL", "smtp://"),
        ("BASE_QUANTIZATION", "int4"),
    ],
)
def test_it_stops_start_up_on_a_bad_value_naming_the_variable(name, value):
    result = manage("check", **{name: value})
    assert result.returncode != 0
    assert name in result.stderr
    assert "Bad environment setting" in result.stderr
    if name == "SECRET_KEY":
        assert value not in result.stderr  # secrets are never echoed


def test_it_starts_with_nothing_configured():
    result = manage("check")
    assert result.returncode == 0, result.stderr


def test_it_passes_the_deployment_checklist_when_debug_is_off():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="0", SECRET_KEY="a-long-random-production-secret-" + "x1y2z3" * 6,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_it_still_reads_the_old_names_of_the_per_user_limits(monkeypatch):
    for new in OLD_NAMES.values():
        monkeypatch.delenv(new, raising=False)
    monkeypatch.setenv("API_MAX_CONCURRENT", "7")
    monkeypatch.setenv("API_RATE_LIMIT", "5/second")
    env = Environment()
    assert (env.MAX_LIVE_ANSWERS, env.RATE_LIMIT) == (7, "5/second")
