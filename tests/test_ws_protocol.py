"""The light receive queue and writable flag of notifyd.server's WebSocket protocol behave as the asyncio.Queue and
asyncio.Event uvicorn's protocol uses them as (no server: the whole protocol is covered by test_realtime)."""

from __future__ import annotations

import asyncio

from notifyd.server import Inbox, Writable


async def test_the_inbox_hands_messages_over_in_order_and_wakes_its_reader() -> None:
    inbox = Inbox()
    assert inbox.empty()
    reading = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reading.done()  # nothing yet: the reader waits
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": "a"})
    assert await reading == {"type": "websocket.connect"}
    assert not inbox.empty()
    assert await inbox.get() == {"type": "websocket.receive", "text": "a"}
    assert inbox.empty()


async def test_a_cancelled_read_leaves_the_inbox_usable() -> None:
    inbox = Inbox()
    reading = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    assert inbox.waiter is None
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    assert await inbox.get() == {"type": "websocket.disconnect", "code": 1000}


async def test_writers_wait_while_the_transport_is_full_and_all_resume() -> None:
    writable = Writable()
    await asyncio.wait_for(writable.wait(), 1)  # open: no wait
    writable.clear()
    writers = [asyncio.create_task(writable.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers)
    writable.set()
    await asyncio.wait_for(asyncio.gather(*writers), 1)
    assert writable.waiters == []
