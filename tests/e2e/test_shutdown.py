"""Stopping the server while an answer streams ends the process cleanly, not with an abort."""

import asyncio
import json

import pytest

from tests.e2e.clients import open_socket
from tests.e2e.servers import daphne_server, demo_database, server_env, sign_up
from tests.e2e.servers import wait_until_healthy
from tests.holding import HELD
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e


def test_it_exits_cleanly_when_stopped_mid_answer(demo_model, tmp_path):
    with demo_database(tmp_path, TEST_MODEL_DIR) as database_url:
        env = server_env(database_url, TEST_MODEL_DIR)
        server, base_url = daphne_server(env, tmp_path / "daphne.log")
        server.start()
        try:
            wait_until_healthy(base_url, server.process, server.log_path)
            session = sign_up(base_url, "stopper")

            async def start_an_answer():
                ws = await open_socket(base_url, session)
                await ws.send(json.dumps({"type": "chat.send", "content": "A long story.",
                                          "params": HELD}))
                events = [json.loads(await ws.recv()) for _ in range(4)]
                return ws, events

            loop = asyncio.new_event_loop()
            ws, events = loop.run_until_complete(start_an_answer())
            assert [e["type"] for e in events] == ["inference.start"] + ["inference.token"] * 3

            server.process.terminate()  # what a service manager, or Ctrl+C, does
            returncode = server.process.wait(timeout=60)
            loop.run_until_complete(ws.close())
            loop.close()
        finally:
            server.stop()
    assert "terminate called" not in server.log()
    assert returncode == 0, server.log()[-2000:]
