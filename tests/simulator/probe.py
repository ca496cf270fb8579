"""A recording WebSocket client for the conformance suite: every frame kept raw and parsed, waits with
deadlines, the close code and reason captured."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from tests.helpers import wait_for

Frame = dict[str, Any]


class Probe:
    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, answer_pings: bool = True
    ) -> None:
        self.session = session
        self.ws = ws
        self.raw: list[str] = []
        self.frames: list[Frame] = []
        self.unparsable: list[str] = []
        self.pings = 0
        self.answer_pings = answer_pings
        self.close_reason: str | None = None
        self._cursor = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, answer_pings: bool = True) -> Probe:
        """Connect with server pings surfaced (autoping off); they are answered unless `answer_pings` is
        False."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2), autoping=False)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws, answer_pings)

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                if msg.type is aiohttp.WSMsgType.CLOSE:
                    self.close_reason = msg.extra
                return
            if msg.type is aiohttp.WSMsgType.ERROR:
                return
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.raw.append(msg.data)
                try:
                    self.frames.append(orjson.loads(msg.data))
                except orjson.JSONDecodeError:
                    self.unparsable.append(msg.data)
            elif msg.type is aiohttp.WSMsgType.PING:
                self.pings += 1
                if self.answer_pings:
                    await self.ws.pong(msg.data)

    @property
    def closed(self) -> bool:
        return self._reader.done()

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def send(self, message: object) -> None:
        await self.ws.send_str(message if isinstance(message, str) else orjson.dumps(message).decode())

    async def subscribe(self, channel: str, sub_id: str | None = None, batched: bool = False) -> None:
        message: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if sub_id is not None:
            message["id"] = sub_id
        if batched:
            message["batched"] = True
        await self.send(message)

    async def next(self, predicate: Callable[[Frame], bool] = lambda f: True, timeout: float = 5.0) -> Frame:
        """The next frame (after the last one returned) matching `predicate`."""

        def find() -> Frame | None:
            for index in range(self._cursor, len(self.frames)):
                if predicate(self.frames[index]):
                    self._cursor = index + 1
                    return self.frames[index]
            return None

        found: Frame = await wait_for(find, timeout, 0.01, "no matching frame")  # type: ignore[arg-type]
        return found

    async def next_type(self, frame_type: str, timeout: float = 5.0, **fields: Any) -> Frame:
        return await self.next(
            lambda f: f.get("type") == frame_type and all(f.get(k) == v for k, v in fields.items()), timeout
        )

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await wait_for(lambda: self.closed, timeout=timeout, interval=0.01, message="connection not closed")
        return self.close_code

    def of_type(self, frame_type: str) -> list[Frame]:
        return [f for f in self.frames if f.get("type") == frame_type]

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except TimeoutError:
            pass
        finally:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            await self.session.close()
