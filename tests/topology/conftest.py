"""The production topology for real: PostgreSQL, Redis, a Celery worker, a reaper, Daphne."""

import time
import uuid

import pytest
import redis

from tests.conftest import require_service
from tests.e2e.servers import (
    POSTGRES_URL,
    Server,
    daphne,
    manage,
    running,
    scratch_database,
    server_env,
)
from tests.settings import TEST_MODEL_DIR

REDIS_URL = "redis://127.0.0.1:6379/14"


class Stack:
    """Handles on the processes of one celery-mode deployment."""

    def __init__(self, env: dict, tmp_path):
        self.env = env
        self.tmp_path = tmp_path
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.worker = self._worker()
        self.reaper = Server(["manage.py", "reaper"], env, tmp_path / "reaper.log")
        self.base_url = ""

    def _worker(self) -> Server:
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        args = ["-m", "celery", "-A", "chatsite", "worker", "-Q", "gpu", "--pool", "threads",
                "--concurrency", "16", "--prefetch-multiplier", "1", "-n", name,
                "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        return Server(args, self.env, self.tmp_path / "worker.log")

    def start_worker(self) -> None:
        self.worker = self._worker()
        self.worker.start()
        self.wait_for_worker()

    def wait_for_worker(self, within: float = 90) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(self.redis.scan_iter("patchbay:worker:*")):
                return
            if self.worker.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.worker.log()}")
            time.sleep(0.2)
        raise RuntimeError(f"worker never became ready:\n{self.worker.log()}")


@pytest.fixture(scope="module")
def stack(demo_model, tmp_path_factory):
    require_service("PostgreSQL", POSTGRES_URL)
    require_service("Redis", REDIS_URL)
    tmp_path = tmp_path_factory.mktemp("topology")
    redis.Redis.from_url(REDIS_URL).flushdb()
    with scratch_database(tmp_path, postgres=True) as database_url:
        env = server_env(
            database_url, TEST_MODEL_DIR,
            INFERENCE_MODE="celery", REDIS_URL=REDIS_URL, STREAM_RESUME_GRACE_S="10",
            MAX_NEW_TOKENS="2000",
        )
        manage(env, "migrate", "--noinput")
        manage(env, "make_demo_model")
        deployment = Stack(env, tmp_path)
        with running(deployment.reaper):
            deployment.start_worker()
            try:
                with daphne(env, tmp_path / "daphne.log") as base_url:
                    deployment.base_url = base_url
                    yield deployment
            finally:
                deployment.worker.stop()
