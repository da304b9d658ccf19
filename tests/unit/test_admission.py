from __future__ import annotations

import asyncio

import pytest

from mercato.errors import Overloaded
from mercato.operator.admission import Admission


async def test_first_come_first_served_and_overload() -> None:
    adm = Admission(slots=1, max_waiting=3)
    order: list[int] = []
    gate = asyncio.Event()

    async def worker(i: int) -> None:
        async with adm.slot():
            order.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(worker(0))]
    await asyncio.sleep(0)
    for i in range(1, 4):
        tasks.append(asyncio.create_task(worker(i)))
        await asyncio.sleep(0)
    assert adm.busy == 1 and adm.waiting == 3
    with pytest.raises(Overloaded) as info:
        await adm.acquire()
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert adm.busy == 0 and adm.waiting == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    adm = Admission(slots=1, max_waiting=5)
    await adm.acquire()
    waiter = asyncio.create_task(adm.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    adm.release()
    assert adm.busy == 0
    async with asyncio.timeout(1):
        await adm.acquire()
    adm.release()


def test_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        Admission(slots=0, max_waiting=1)
