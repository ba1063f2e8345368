"""The production topology for real: PostgreSQL, Redis, a Celery worker, a reaper, Daphne."""

import os
import socket
import time
import uuid
from contextlib import contextmanager

import pytest
import redis

from tests.conftest import require_service
from tests.e2e.servers import (
    POSTGRES_URL,
    Server,
    daphne,
    running,
    demo_database,
    server_env,
)
from tests.settings import TEST_MODEL_DIR

# One Redis database per suite, so two checkouts can run their suites side by side.
REDIS_URL = os.environ.get("TEST_TOPOLOGY_REDIS_URL", "redis://127.0.0.1:6379/14")


class Stack:
    """Handles on the processes of one celery-mode deployment."""

    def __init__(self, env: dict, tmp_path):
        self.env = env
        self.tmp_path = tmp_path
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.workers: list[Server] = []
        self.reaper = Server(["manage.py", "reaper"], env, tmp_path / "reaper.log")
        self.base_url = ""

    @property
    def worker(self) -> Server:
        """The worker started last."""
        return self.workers[-1]

    def start_worker(self, **env) -> Server:
        """A worker with the deployment's environment, and `env` on top (its own REDIS_URL, say)."""
        name = f"test-{uuid.uuid4().hex[:8]}@%h"
        args = ["-m", "celery", "-A", "chatsite", "worker", "-Q", "gpu", "--pool", "threads",
                "--concurrency", "16", "--prefetch-multiplier", "1", "-n", name,
                "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        worker = Server(args, {**self.env, **env}, self.tmp_path / f"worker-{len(self.workers)}.log")
        self.workers.append(worker.start())
        self.wait_for_worker(worker)
        return worker

    def wait_for_worker(self, worker: Server, within: float = 90) -> None:
        """Until the worker's routing record is in Redis: it consumes its queues and beats."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.redis.hexists("patchbay:workers", routing_name(worker)):
                return
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{worker.log()}")
            time.sleep(0.2)
        raise RuntimeError(f"worker never became ready:\n{worker.log()}")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()


def routing_name(worker: Server) -> str:
    """The name a worker process goes by in Redis and in its queue `gpu.<name>`."""
    return f"{socket.gethostname()}:{worker.process.pid}"


# What a deployment keeps in Redis: its token logs and worker records, Celery's queues and
# bindings. Only these are removed before a run, never the rest of the shared server.
DEPLOYMENT_KEYS = ("patchbay:*", "gpu", "gpu.*", "celery", "_kombu.*", "unacked*")


def forget_earlier_deployments(client: redis.Redis) -> None:
    """Keys an earlier (perhaps killed) run left, whose queued tasks would reach new workers."""
    for pattern in DEPLOYMENT_KEYS:
        for key in client.scan_iter(match=pattern):
            client.delete(key)


@contextmanager
def deployment(tmp_path, *, workers: int = 1, **settings):
    """PostgreSQL, a Redis db of its own (14 by default), a reaper, `workers` Celery workers and Daphne, in celery mode."""
    require_service("PostgreSQL", POSTGRES_URL)
    require_service("Redis", REDIS_URL)
    forget_earlier_deployments(redis.Redis.from_url(REDIS_URL))
    with demo_database(tmp_path, TEST_MODEL_DIR, postgres=True) as database_url:
        env = server_env(
            database_url, TEST_MODEL_DIR,
            INFERENCE_MODE="celery", REDIS_URL=REDIS_URL, STREAM_RESUME_GRACE_S="10",
            **settings,
        )
        stack = Stack(env, tmp_path)
        with running(stack.reaper):
            try:
                for _ in range(workers):
                    stack.start_worker()
                with daphne(env, tmp_path / "daphne.log") as base_url:
                    stack.base_url = base_url
                    yield stack
            finally:
                stack.stop_workers()


@pytest.fixture(scope="module")
def stack(demo_model, tmp_path_factory):
    with deployment(tmp_path_factory.mktemp("topology")) as deployed:
        yield deployed
