"""Keeps Python's cyclic garbage collector off the long-lived objects of open sessions.

A full collection walks every object the collector tracks. Each open WebSocket holds ~140 of them (uvicorn's
protocol and transport, the ASGI tasks and their coroutines, the session), so at 10,000 sockets one full
collection stalls the process for over a second. Python starts one when the objects that survived into the oldest
generation since the last reach a quarter of it: sockets being opened reach that, and so do the objects alive while
a bulk send's events are being written (a writer task per session), within a few bulk sends; every event in flight
then waits for the collection.

Frozen objects are in no collection, and gc.freeze() costs the same however many there are. So the hub freezes what
is alive, at most once per FREEZE_INTERVAL, after its reads: the sessions opened since stay out of every later
collection, and whatever is freed by reference counting is freed as before, frozen or not. A young collection first
frees the young cycles, so that little garbage is frozen. What only a full collection frees stays frozen until the
next thaw: a closed connection leaves asyncio's transport, its socket and a bound method in a cycle (~5 objects).
So once a quarter of the sessions open at the last thaw (at least CHURN_FLOOR) have closed, everything is unfrozen,
collected in full and frozen again.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("notifyd.hub")

FREEZE_INTERVAL = 1.0  # seconds
CHURN = 0.25
CHURN_FLOOR = 1000


class Collector:
    def __init__(self) -> None:
        self._sessions_at_thaw = 0
        self._frozen_at = 0.0
        self.closed = 0  # sessions closed since the last thaw

    def tend(self, open_sessions: int) -> None:
        """Freezes what is alive now (at most once per FREEZE_INTERVAL); first thaws and collects everything when a
        quarter of the sessions have closed since the last thaw."""
        now = time.monotonic()
        if now - self._frozen_at < FREEZE_INTERVAL:
            return
        self._frozen_at = now
        if self.closed >= max(CHURN_FLOOR, self._sessions_at_thaw) * CHURN:
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            self._sessions_at_thaw = open_sessions
            self.closed = 0
            log.info("full collection: %d objects freed in %.0f ms", found, (time.monotonic() - now) * 1000)
        else:
            gc.collect(1)
            gc.freeze()
