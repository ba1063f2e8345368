"""How the web process sizes its engine: the settings reach it, and on a CPU it leaves the web
tier a core."""

import pytest

from chatsite.chat import engine


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

    assert engine._default_threads() == threads
