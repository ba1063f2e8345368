"""The committed chat bundle matches its sources, so `make run` needs no Node."""

import importlib.util

from tests.e2e.servers import ROOT


def load_bundle_module():
    spec = importlib.util.spec_from_file_location("bundle", ROOT / "frontend" / "bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_commits_a_bundle_built_from_the_current_sources():
    bundle = load_bundle_module()
    assert bundle.is_fresh(), "frontend/dist/patchbay.js is stale: run `make frontend` and commit it"


def test_it_tells_a_stale_bundle_from_a_fresh_one(tmp_path, monkeypatch):
    bundle = load_bundle_module()
    monkeypatch.setattr(bundle, "BUNDLE", tmp_path / "patchbay.js")
    (tmp_path / "patchbay.js").write_text(f"/* patchbay bundle, sources {'0' * 64} */\n")
    assert not bundle.is_fresh()
    (tmp_path / "patchbay.js").write_text(f"/* patchbay bundle, sources {bundle.source_hash()} */\n")
    assert bundle.is_fresh()
