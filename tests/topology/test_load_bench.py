"""bench/load.py in celery mode: streams over SSE and WebSocket from a GPU worker, all intact."""

import json

from tests.e2e.test_load_bench import KEYS, load


def test_it_streams_from_a_worker_without_losing_a_token(stack):
    done = load(stack.base_url, "--streams", "8", "--per-user", "4", "--max-tokens", "12",
                "--warmup", "1", "--answers", "1", "--metrics-url", f"{stack.base_url}/metrics")

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result) and result["streams"] == 8
    assert result["errors"] == result["dropped_tokens"] == result["duplicated_tokens"] == 0
    # The web tier routed each measured stream once (its /metrics has no engine to report).
    assert sum(result["routing_decisions"].values()) == 8
