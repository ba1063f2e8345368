"""A real Daphne: an admin uploads an adapter whose pattern backtracks for ever under Python's
re, and the server keeps answering everyone while the adapter is checked."""

import json
import threading
import time

import pytest
import requests

from tests.adapters.test_crafted_adapters import BACKTRACKING
from tests.e2e.servers import daphne, manage, scratch_database, server_env
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def signed_in_admin(base_url: str) -> requests.Session:
    session = requests.Session()
    login = f"{base_url}/admin/login/"
    session.get(login, timeout=30)
    response = session.post(
        login,
        data={"username": "root", "password": PASSWORD, "next": "/admin/",
              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": login}, allow_redirects=False, timeout=30,
    )
    assert response.status_code == 302, response.text
    return session


class HealthProbe(threading.Thread):
    """Asks /healthz again and again, keeping each answer's status and time."""

    def __init__(self, base_url: str):
        super().__init__(daemon=True)
        self.url, self.answers, self.done = f"{base_url}/healthz", [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            began = time.monotonic()
            try:
                status = requests.get(self.url, timeout=10).status_code
            except requests.RequestException as error:
                status = type(error).__name__
            self.answers.append((status, time.monotonic() - began))
            time.sleep(0.05)


def test_it_answers_healthz_while_an_admin_uploads_a_backtracking_adapter(demo_model, tmp_path):
    poet = next(adapter for adapter in demo_model.adapters if adapter.slug == "demo-poet")
    config = json.loads((poet.path / "adapter_config.json").read_text())
    hostile = json.dumps({**config, "target_modules": BACKTRACKING})
    with scratch_database(tmp_path) as database_url:
        env = server_env(database_url, TEST_MODEL_DIR, ADAPTERS_DIR=str(tmp_path / "adapters"),
                         DJANGO_SUPERUSER_PASSWORD=PASSWORD)
        manage(env, "migrate", "--noinput")
        manage(env, "createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
        with daphne(env, tmp_path / "daphne.log") as base_url:
            admin = signed_in_admin(base_url)
            add = f"{base_url}/admin/adapters/adapter/add/"
            admin.get(add, timeout=30)
            probe = HealthProbe(base_url)
            probe.start()
            time.sleep(0.5)  # a few answers before the upload, to compare with
            began = time.monotonic()
            try:
                response = admin.post(
                    add,
                    data={"csrfmiddlewaretoken": admin.cookies["csrftoken"], "way_in": "files",
                          "slug": "hostile", "name": "Hostile", "visibility": "public"},
                    files={"config_file": ("adapter_config.json", hostile.encode()),
                           "weights_file": ("adapter_model.safetensors",
                                            (poet.path / "adapter_model.safetensors").read_bytes())},
                    headers={"Referer": add}, timeout=90,
                )
            finally:
                took = time.monotonic() - began
                time.sleep(0.5)
                probe.done.set()
                probe.join(timeout=30)

    assert response.status_code == 200
    assert "matches no layer of the base model" in response.text
    assert took < 15, f"the upload took {took:.1f} s"
    assert probe.answers and all(status == 200 for status, _ in probe.answers), probe.answers
    assert max(seconds for _, seconds in probe.answers) < 5, probe.answers
