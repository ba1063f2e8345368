"""Clients that talk to a live server the way a browser would."""

from __future__ import annotations

import asyncio
import json
import re
import time

import requests
import websockets

from tests.e2e.servers import sign_up


def socket_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/ws/chat/"


async def open_socket(base_url: str, session):
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return await websockets.connect(
        socket_url(base_url), origin=base_url, additional_headers={"Cookie": cookie}
    )


async def receive(ws, timeout: float = 30) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until_end(ws, timeout: float = 30) -> list[dict]:
    events = []
    while not events or events[-1]["type"] != "inference.end":
        events.append(await receive(ws, timeout))
    return events


def chat_frame(content: str, **fields) -> str:
    return json.dumps({"type": "chat.send", "content": content, **fields})


def text_of(events: list[dict]) -> str:
    return "".join(e["payload"]["text"] for e in events if e["type"] == "inference.token")


def messages(session, base_url: str, conversation_id: int) -> list[dict]:
    response = session.get(f"{base_url}/api/v1/conversations/{conversation_id}/messages/")
    assert response.status_code == 200, response.text
    return response.json()


def message(session, base_url: str, conversation_id: int, message_id: int) -> dict:
    return next(m for m in messages(session, base_url, conversation_id) if m["id"] == message_id)


class Account:
    """A person signed up through the site, with a key made on the API keys page."""

    def __init__(self, base_url: str, username: str):
        self.base_url = base_url
        self.session = sign_up(base_url, username)
        page = self.session.post(
            f"{base_url}/accounts/keys/",
            data={"name": "tests", "csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
            headers={"Referer": f"{base_url}/accounts/keys/"},
        )
        self.key = re.search(r'id="new-api-key">([^<]+)<', page.text).group(1)
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def revoke_key(self) -> None:
        """Revoke the key on the API keys page, as its owner would."""
        page = self.session.get(f"{self.base_url}/accounts/keys/")
        key_id = re.search(r"/accounts/keys/(\d+)/revoke/", page.text).group(1)
        response = self.session.post(
            f"{self.base_url}/accounts/keys/{key_id}/revoke/",
            data={"csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
            headers={"Referer": f"{self.base_url}/accounts/keys/"},
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text

    def get(self, path: str, headers=None, **kwargs):
        return requests.get(
            self.base_url + path, headers=headers or self.headers, timeout=30, **kwargs
        )

    def post(self, path: str, body=None, **kwargs):
        return requests.post(
            self.base_url + path, json=body, headers=self.headers, timeout=30, **kwargs
        )

    def send(self, content: str = "Hello!", max_tokens: int = 8, **fields) -> dict:
        conversation = self.post("/api/v1/conversations/", {}).json()["id"]
        response = self.post(
            f"/api/v1/conversations/{conversation}/messages/",
            {"content": content, "parameters": {"max_tokens": max_tokens, "seed": 1}, **fields},
        )
        assert response.status_code == 201, response.text
        return response.json()

    def wait_for_status(self, message_id: int, statuses=("complete", "stopped", "interrupted")):
        deadline = time.monotonic() + 60
        while True:
            message = self.get(f"/api/v1/messages/{message_id}/").json()
            if message["status"] in statuses or time.monotonic() > deadline:
                return message
            time.sleep(0.05)
