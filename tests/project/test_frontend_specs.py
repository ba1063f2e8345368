"""The chat page's pure modules pass their `node --test` specs (frontend/tests/*.test.mjs).

This is how `make test` runs them: the suite fails on a failing spec. Without Node the test
skips with a message, or fails under REQUIRE_SERVICES=1, as the browser tests do.
"""

import os
import shutil
import subprocess

import pytest

from tests.e2e.servers import ROOT

SPECS = sorted((ROOT / "frontend" / "tests").glob("*.test.mjs"))


def node() -> str:
    path = shutil.which("node")
    if path is None:
        message = "node is not installed: the chat page's specs (frontend/tests) did not run"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_it_has_specs_for_the_tree_and_the_stream_reducer():
    names = {spec.name for spec in SPECS}
    assert {"tree.test.mjs", "streams.test.mjs"} <= names


def test_it_passes_every_spec_of_the_chat_page():
    result = subprocess.run(
        [node(), "--test", *map(str, SPECS)], cwd=ROOT / "frontend",
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
