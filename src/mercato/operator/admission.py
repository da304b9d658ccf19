"""Fair admission to a fixed number of generation slots, with a bounded waiting line.

Requests are served first come, first served. When every slot is busy and the waiting
line is full, a request is refused at once with ``Overloaded`` (503 + Retry-After)
instead of piling up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mercato.errors import Overloaded


class Admission:
    def __init__(self, slots: int, max_waiting: int, retry_after: int = 1) -> None:
        if slots < 1 or max_waiting < 0:
            raise ValueError("slots must be >= 1 and max_waiting >= 0")
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._max_waiting = max_waiting
        self._retry_after = retry_after
        self.slots = slots

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def busy(self) -> int:
        return self.slots - self._free

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        if len(self._waiters) >= self._max_waiting:
            raise Overloaded(
                f"server busy: {self.slots} generating, {len(self._waiters)} waiting",
                retry_after=self._retry_after,
                status=503,
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a slot just as we gave up: pass it on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot straight to the next in line
                return
        self._free += 1
