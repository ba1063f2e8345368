"""Real server processes for end-to-end tests: a database of their own and a Daphne."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

from tests.holding import HELD_ENV

ROOT = Path(__file__).resolve().parents[2]


POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


@contextmanager
def scratch_database(tmp_path: Path, *, postgres: bool = False, template: str | None = None):
    """A database for server processes: a fresh PostgreSQL one when DATABASE_URL names a
    PostgreSQL server (as in CI) or `postgres` is asked for, else an SQLite file. `template`:
    a PostgreSQL database to copy (see `demo_database`)."""
    url = os.environ.get("DATABASE_URL", "")
    if postgres and not is_postgres(url):
        url = POSTGRES_URL
    if not is_postgres(url):
        yield f"sqlite:///{tmp_path / 'server.sqlite3'}"
        return
    import psycopg

    name = f"patchbay_e2e_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin_url()
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield urlparse(url)._replace(path=f"/{name}").geturl()
    finally:
        _drop_postgres_database(admin, name)


@contextmanager
def demo_database(tmp_path: Path, model_dir: Path, *, postgres: bool = False):
    """A scratch database (as `scratch_database` chooses) that is already migrated and holds
    the demo adapters of `model_dir`: a copy of one that `manage.py migrate` and
    `make_demo_model` made once per test session. Each deployment so skips two processes
    (about 8 s of CPU, most of it importing torch), and tests the same start state."""
    url = os.environ.get("DATABASE_URL", "")
    on_postgres = postgres or is_postgres(url)
    template = _demo_template(model_dir, postgres=on_postgres)
    if not on_postgres:
        path = tmp_path / "server.sqlite3"
        _copy_sqlite(template, path)
        yield f"sqlite:///{path}"
        return
    with scratch_database(tmp_path, postgres=True, template=template) as database_url:
        yield database_url


_DEMO_TEMPLATES: dict[tuple[Path, bool], str] = {}


def _demo_template(model_dir: Path, *, postgres: bool) -> str:
    """The session's template for `demo_database`: an SQLite path or a PostgreSQL name."""
    key = (model_dir, postgres)
    if key not in _DEMO_TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix="patchbay-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        if postgres:
            template = _postgres_template(folder, model_dir)
        else:
            template = str(folder / "template.sqlite3")
            _make_demo_database(f"sqlite:///{template}", model_dir)
        _DEMO_TEMPLATES[key] = template
    return _DEMO_TEMPLATES[key]


def _postgres_template(folder: Path, model_dir: Path) -> str:
    import psycopg

    name = f"patchbay_template_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    atexit.register(_drop_postgres_database, admin, name)
    _make_demo_database(urlparse(admin)._replace(path=f"/{name}").geturl(), model_dir)
    return name


def _make_demo_database(database_url: str, model_dir: Path) -> None:
    env = server_env(database_url, model_dir)
    manage(env, "migrate", "--noinput")
    manage(env, "make_demo_model")


def _copy_sqlite(source: str, destination: Path) -> None:
    """SQLite's backup API, which reads the template's write-ahead log too."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(destination)) as dst:
        src.backup(dst)


def _postgres_admin_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return urlparse(url if is_postgres(url) else POSTGRES_URL)._replace(path="/postgres").geturl()


def _drop_postgres_database(admin: str, name: str) -> None:
    import psycopg

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
        STREAM_RESUME_GRACE_S="0",
        **HELD_ENV,
    )
    env.update(extra)
    return env


def manage(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=timeout)


class Server:
    """A server process of ours, with its log, that a test may also kill. `listener`: a
    socket it inherits and serves on."""

    def __init__(self, args: list[str], env: dict, log_path: Path, listener: socket.socket | None = None):
        self.args, self.env, self.log_path, self.listener = args, env, log_path, listener
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.args], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=(self.listener.fileno(),) if self.listener else (),
        )
        log.close()
        return self

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.listener:
            self.listener.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running(server: Server):
    server.start()
    try:
        yield server
    finally:
        server.stop()


def daphne_server(env: dict, log_path: Path) -> tuple[Server, str]:
    """Daphne on a port the OS chose: the test binds it and Daphne inherits the socket, so no
    other process can take the port between choosing and serving (and a restart keeps it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    args = ["-m", "daphne", "--fd", str(listener.fileno()), "chatsite.asgi:application"]
    return Server(args, env, log_path, listener), f"http://127.0.0.1:{port}"


@contextmanager
def daphne(env: dict, log_path: Path):
    server, base_url = daphne_server(env, log_path)
    with running(server):
        wait_until_healthy(base_url, server.process, log_path)
        yield base_url


def wait_until_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 180  # a busy machine starts torch slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited early:\n{log_path.read_text()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not up yet, or too busy starting to answer
            pass
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


@contextmanager
def local_deployment(tmp_path: Path, model_dir: Path, *, postgres: bool = False, **extra):
    """A migrated database with the demo adapters and a local-mode Daphne over it (`extra`:
    more environment for it; `postgres`: on PostgreSQL even without DATABASE_URL)."""
    with demo_database(tmp_path, model_dir, postgres=postgres) as database_url:
        env = server_env(database_url, model_dir, **extra)
        with daphne(env, tmp_path / "daphne.log") as base_url:
            yield base_url
