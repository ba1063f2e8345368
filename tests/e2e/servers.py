"""Real server processes for end-to-end tests: a database of their own and a Daphne."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def scratch_database(tmp_path: Path):
    """A database for server processes: a fresh PostgreSQL one when DATABASE_URL names a
    PostgreSQL server (as in CI), else an SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield f"sqlite:///{tmp_path / 'server.sqlite3'}"
        return
    import psycopg

    name = f"patchbay_e2e_{uuid.uuid4().hex[:12]}"
    admin = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlparse(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, model_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DEBUG="1",
        DATABASE_URL=database_url,
        BASE_MODEL=str(model_dir / "base"),
        ADAPTERS_DIR=str(model_dir / "adapters"),
        ENGINE_THREADS="1",
        SECRET_KEY="e2e-test-secret-key-" + "k" * 32,
        **extra,
    )
    return env


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)


@contextmanager
def daphne(env: dict, log_path: Path):
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "chatsite.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited early:\n{log_path.read_text()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or busy importing on a loaded machine
        time.sleep(0.2)
    raise RuntimeError(f"daphne did not become healthy:\n{log_path.read_text()}")


def sign_up(base_url: str, username: str, password: str = "correct horse battery") -> requests.Session:
    """Sign up through the real form, as a person would; returns a signed-in session."""
    session = requests.Session()
    session.get(f"{base_url}/accounts/signup/")
    response = session.post(
        f"{base_url}/accounts/signup/",
        data={"username": username, "password1": password, "password2": password,
              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/accounts/signup/"},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    return session
