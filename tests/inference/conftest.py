"""Fixtures for the model side: an engine on the demo model, and references to its adapters."""

import pytest
import torch

from inference.demo import DemoModel
from inference.engine import BatchEngine
from inference.types import AdapterRef

# Two cores and a tiny model: one thread per matrix product is fastest and leaves the other
# core to the test thread.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def engine(demo_model: DemoModel):
    engine = BatchEngine(str(demo_model.base_dir), device="cpu")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def adapters(demo_model: DemoModel) -> dict[str, AdapterRef]:
    """The demo adapters by slug: demo-poet, demo-terse, demo-chef."""
    return {adapter.slug: AdapterRef(adapter.slug, str(adapter.path)) for adapter in demo_model.adapters}
