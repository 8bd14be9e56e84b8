"""The service's coalescer: the requests ready in one turn of the event loop share one model call."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from planets_mlops.service.coalesce import Coalescer


class Recorder:
    """An ``answer`` function that records the batches it gets; row i answers ``{"row": value}``."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, batch: np.ndarray) -> tuple[list[dict], np.ndarray]:
        self.calls.append(len(batch))
        if self.fail:
            raise RuntimeError("model broke")
        return [{"row": float(row[0])} for row in batch], batch[:, :2] * 10


def rows(*values: float) -> np.ndarray:
    return np.array([[v, v + 0.5, 0.0] for v in values])


def test_requests_ready_together_share_one_call_and_get_their_own_rows() -> None:
    answer = Recorder()
    coalescer = Coalescer(answer)

    async def main() -> list:
        return await asyncio.gather(
            coalescer.answer(rows(1)), coalescer.answer(rows(2, 3)), coalescer.answer(rows(4))
        )

    (one, one_emb), (two, two_emb), (three, _) = asyncio.run(main())
    assert answer.calls == [4]
    assert one == [{"row": 1.0}] and two == [{"row": 2.0}, {"row": 3.0}] and three == [{"row": 4.0}]
    np.testing.assert_array_equal(two_emb, rows(2, 3)[:, :2] * 10)
    np.testing.assert_array_equal(one_emb, rows(1)[:, :2] * 10)
    assert (coalescer.calls, coalescer.rows) == (1, 4)


def test_a_lone_request_is_answered_at_once() -> None:
    """One request waits for no other: its call runs on the next hop of the loop."""
    answer = Recorder()
    coalescer = Coalescer(answer)

    async def main() -> list:
        first = await coalescer.answer(rows(1))
        second = await coalescer.answer(rows(2))
        return [first[0], second[0]]

    assert asyncio.run(main()) == [[{"row": 1.0}], [{"row": 2.0}]]
    assert answer.calls == [1, 1]


def test_a_turn_larger_than_max_rows_is_split() -> None:
    answer = Recorder()
    coalescer = Coalescer(answer, max_rows=3)

    async def main() -> list:
        return await asyncio.gather(*(coalescer.answer(rows(i, i)) for i in range(4)))

    results = asyncio.run(main())
    assert answer.calls == [2, 2, 2, 2]
    assert [r[0][0]["row"] for r in results] == [0.0, 1.0, 2.0, 3.0]


def test_a_failed_call_fails_each_of_its_requests_and_the_next_call_runs() -> None:
    answer = Recorder(fail=True)
    coalescer = Coalescer(answer)

    async def main() -> list:
        return await asyncio.gather(
            coalescer.answer(rows(1)), coalescer.answer(rows(2)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    answer.fail = False
    assert asyncio.run(coalescer.answer(rows(5)))[0] == [{"row": 5.0}]


def test_a_cancelled_request_is_left_out_of_the_call() -> None:
    """A request BentoML's timeout cancelled before its turn costs no model row."""
    answer = Recorder()
    coalescer = Coalescer(answer)

    async def main() -> list:
        gone = asyncio.ensure_future(coalescer.answer(rows(1)))
        kept = asyncio.ensure_future(coalescer.answer(rows(2)))
        await asyncio.sleep(0)  # both submitted; the call is scheduled
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return (await kept)[0]

    assert asyncio.run(main()) == [{"row": 2.0}]
    assert answer.calls == [1]


def test_a_request_running_alone_is_answered_without_a_hop_of_the_loop() -> None:
    """``alone``: no other request can join; the call runs at once (a callback queued first waits)."""
    answer = Recorder()
    alone = [True]
    coalescer = Coalescer(answer, alone=lambda: alone[0])
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "hop")
        results, _ = await coalescer.answer(rows(1))
        order.append(f"answered {results}")
        alone[0] = False
        loop.call_soon(order.append, "hop")
        results, _ = await coalescer.answer(rows(2))
        order.append(f"answered {results}")

    asyncio.run(main())
    # Alone: answered before the callback queued ahead of it; not alone: after its own.
    assert order == ["answered [{'row': 1.0}]", "hop", "hop", "answered [{'row': 2.0}]"]
    assert answer.calls == [1, 1] and (coalescer.calls, coalescer.rows) == (2, 2)


def test_a_request_alone_with_calls_pending_joins_them() -> None:
    answer = Recorder()
    coalescer = Coalescer(answer, alone=lambda: True)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        pending = loop.create_task(coalescer.answer(rows(1)))  # starts alone: answered at once
        await asyncio.sleep(0)
        coalescer._pending.append((rows(5), loop.create_future()))  # a call pending
        coalescer._scheduled = True
        loop.call_soon(coalescer._flush)
        second = await coalescer.answer(rows(2))
        return [(await pending)[0], second[0]]

    assert asyncio.run(main()) == [[{"row": 1.0}], [{"row": 2.0}]]
    assert answer.calls == [1, 2]
