"""Clients that talk to a live server the way a browser would."""

from __future__ import annotations

import asyncio
import json

import websockets


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
