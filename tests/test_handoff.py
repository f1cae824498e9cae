"""The Handoff between the scheduler loop and its workers: FIFO, waiting only when empty, nothing
lost when a worker is cancelled as an item reaches it, and a clean end on close."""

from __future__ import annotations

import anyio
import pytest

from batcher.handoff import Handoff

pytestmark = pytest.mark.anyio


async def test_items_come_out_in_order_and_get_returns_none_once_closed_and_drained() -> None:
    work: Handoff[int] = Handoff()
    for i in range(3):
        work.put(i)
    work.close()
    assert [await work.get() for _ in range(4)] == [0, 1, 2, None]
    with pytest.raises(RuntimeError):
        work.put(3)


async def test_a_waiting_worker_gets_the_item_directly_and_close_releases_the_rest() -> None:
    work: Handoff[str] = Handoff()
    got: list[str | None] = []

    async def worker() -> None:
        while (item := await work.get()) is not None:
            got.append(item)
        got.append(None)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        work.put("a")
        work.put("b")
        await anyio.wait_all_tasks_blocked()
        assert sorted(x for x in got if x) == ["a", "b"] and len(work) == 0
        work.close()
    assert got.count(None) == 3


async def test_an_item_handed_to_a_worker_cancelled_at_that_moment_is_not_lost() -> None:
    """Either the worker got it (and its cancellation then interrupts the work, like any request
    in flight) or it is back at the head of the queue: never neither."""
    for cancel_first in (False, True):
        work: Handoff[str] = Handoff()
        got: list[str | None] = []

        async def worker(work: Handoff[str] = work, got: list[str | None] = got) -> None:
            got.append(await work.get())

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await anyio.wait_all_tasks_blocked()
            if cancel_first:
                tg.cancel_scope.cancel()
                work.put("job")
            else:
                work.put("job")  # handed to the waiting get() ...
                tg.cancel_scope.cancel()  # ... which is cancelled before it runs again
        assert got == ["job"] or (got == [] and len(work) == 1), (cancel_first, got, len(work))


async def test_a_cancelled_waiter_is_skipped_by_put() -> None:
    """A get() cancelled while waiting leaves a cancelled future behind: put() passes it over."""
    work: Handoff[str] = Handoff()
    with anyio.move_on_after(0):
        await work.get()
    work.put("job")
    assert len(work) == 1 and await work.get() == "job"
