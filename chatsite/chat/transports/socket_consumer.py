"""/ws/chat/: a thin transport over chat services (docs/ARCHITECTURE.md, "How a token travels")."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chatsite.accounts import socket_sessions
from chatsite.chat.conversations import limits, services
from chatsite.chat.conversations.selectors import message_of
from chatsite.chat.models import Message
from chatsite.chat.streams import envelopes
from chatsite.chat.streams.follow import follow_or_replay
from chatsite.chat.streams.protocol import (
    ChatContinue,
    ChatFollow,
    ChatRegenerate,
    ChatSend,
    ChatStop,
    parse_frame,
)
from chatsite.chat.workers.local_run import generation_run, run_of
from chatsite.errors import ChatError

NOT_SIGNED_IN = 4401


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=NOT_SIGNED_IN)
            return
        self.follows: set[asyncio.Task] = set()
        self.subscriptions: set = set()
        # The socket lives as long as its session does (accounts/socket_sessions.py).
        self.session_key = self.scope["session"].session_key
        self.session_groups = socket_sessions.groups_of(
            session_key=self.session_key, user_id=self.user.pk
        )
        for group in self.session_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "session_groups", ()):
            await self.channel_layer.group_discard(group, self.channel_name)
        # Close subscriptions directly: a cancellation can be swallowed by a read that is timing
        # out at the same moment (asyncio.timeout on Python 3.11), and then the answer would
        # stay watched by nobody.
        for subscription in list(getattr(self, "subscriptions", ())):
            subscription.close()
        for task in list(getattr(self, "follows", ())):
            task.cancel()

    async def receive(self, text_data=None, bytes_data=None):
        # Checked on every frame too: a session can end where no notice reaches this process
        # (`manage.py changepassword` beside a local-mode server).
        if not await self._session_valid():
            await self._end_session()
            return
        try:
            frame = await self._counted(text_data)
            if isinstance(frame, ChatSend):
                await self._send(frame)
            elif isinstance(frame, ChatStop):
                await self._stop(frame)
            elif isinstance(frame, ChatFollow):
                await self._resume(frame)
            elif isinstance(frame, ChatRegenerate):
                await self._regenerate(frame)
            elif isinstance(frame, ChatContinue):
                await self._continue(frame)
        except ChatError as err:
            for envelope in envelopes.rejection(err):
                await self.send_json(envelope)

    # --- the session's end (channel-layer events from accounts/socket_sessions.py) -------------
    async def session_end(self, event) -> None:
        await self._end_session()

    async def session_recheck(self, event) -> None:
        if not await self._session_valid():
            await self._end_session()

    async def _session_valid(self) -> bool:
        return await database_sync_to_async(socket_sessions.session_signs_in)(
            session_key=self.session_key, user_id=self.user.pk
        )

    async def _end_session(self) -> None:
        await self.close(code=socket_sessions.SESSION_ENDED, reason=socket_sessions.ENDED_REASON)

    async def _counted(self, text_data):
        """The frame, counted against the user's rate limit; a bad one counts too. Stop is
        never refused: it only frees the engine."""
        try:
            frame = parse_frame(text_data)
        except ChatError:
            await sync_to_async(limits.rate_check_user)(self.user)
            raise
        if not isinstance(frame, ChatStop):
            await sync_to_async(limits.rate_check_user)(self.user)
        return frame

    async def _send(self, frame: ChatSend) -> None:
        exchange = await database_sync_to_async(services.exchange_start)(
            user=self.user,
            conversation_id=frame.conversation,
            content=frame.content,
            adapter_slug=frame.adapter,
            params=frame.params,
            parent_id=frame.parent,
            parent_given=frame.parent_given,
        )
        self._follow((await generation_run(exchange)).subscribe())

    async def _regenerate(self, frame: ChatRegenerate) -> None:
        exchange = await database_sync_to_async(services.exchange_regenerate)(
            user=self.user, message_id=frame.message, adapter_slug=frame.adapter,
            params=frame.params,
        )
        self._follow((await generation_run(exchange)).subscribe())

    async def _continue(self, frame: ChatContinue) -> None:
        exchange = await database_sync_to_async(services.exchange_continue)(
            user=self.user, message_id=frame.message, params=frame.params
        )
        self._follow((await generation_run(exchange)).subscribe())

    async def _stop(self, frame: ChatStop) -> None:
        await database_sync_to_async(message_of)(self.user, frame.message)
        run = run_of(frame.message)
        if run is not None:
            run.stop()

    async def _resume(self, frame: ChatFollow) -> None:
        message = await database_sync_to_async(message_of)(
            self.user, frame.message, role=Message.Role.ASSISTANT
        )
        after = -1 if frame.resume is None else frame.resume
        self._follow(await follow_or_replay(message, after))

    def _follow(self, subscription) -> None:
        self.subscriptions.add(subscription)
        task = asyncio.create_task(self._relay(subscription))
        self.follows.add(task)
        task.add_done_callback(self.follows.discard)

    async def _relay(self, subscription) -> None:
        try:
            async for _, envelope in subscription:
                await self.send_json(envelope)
        finally:
            self.subscriptions.discard(subscription)
            subscription.close()
