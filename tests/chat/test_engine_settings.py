"""How the web process sizes its engine: the settings reach it, and on a CPU it leaves the web
tier a core."""

import pytest

from chatsite.chat.workers import engine_holder


@pytest.mark.parametrize(
    ("mode", "device", "cores", "threads"),
    [
        ("local", "cpu", 2, 1),  # the web tier keeps one of two cores
        ("local", "cpu", 8, 7),
        ("local", "cpu", 1, None),  # one core: torch's own default
        ("celery", "cpu", 8, None),  # a worker has no web tier beside it
        ("local", "cuda", 8, None),  # the GPU does the work
    ],
)
def test_it_leaves_the_web_tier_a_core_in_local_mode_on_a_cpu(
    settings, monkeypatch, mode, device, cores, threads
):
    settings.INFERENCE_MODE, settings.ENGINE_DEVICE = mode, device
    monkeypatch.setattr("os.cpu_count", lambda: cores)

    assert engine_holder._default_threads() == threads


def test_the_batch_limits_reach_the_engine_it_loads(settings, demo_model):
    settings.ENGINE_MAX_BATCH_SIZE = 3
    settings.ENGINE_MAX_BATCH_TOKENS = 4096
    settings.ENGINE_MAX_QUEUED = 5

    loaded = engine_holder._load()  # not the process's engine: a fresh one, closed below
    try:
        limits = (loaded._max_batch_size, loaded._max_batch_tokens, loaded._max_queued)
    finally:
        loaded.close()

    assert limits == (3, 4096, 5)
