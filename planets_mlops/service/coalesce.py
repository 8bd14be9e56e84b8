"""One model call for the requests a worker has ready at once (in-process micro-batching).

A worker's requests run on its event loop one after the other. Under concurrent load the
loop often holds several of them ready in the same turn (their bodies arrived together);
each used to run ONNX Runtime and the open-set guard on its own, and the guard reads its
whole bank (2,400 x 128 float64) for each image. :class:`Coalescer` gathers the model
batches submitted during one turn of the loop and answers them with one call of
:meth:`planets_mlops.model_folder.LoadedModel.answer`, flushed by ``loop.call_soon``: it
runs after the requests already ready in this turn and before any I/O is polled again, so a
lone request waits for nothing but one hop of the loop. A request that is the only one the
worker is running (``alone``: :func:`planets_mlops.service.protocol.lone_request`) has no
one to wait for: no other can join its call, and it is answered at once, without the two
hops (~7 us a request).

The answers are those of one call per request, to the bit: ONNX Runtime computes each row
of a batch alone, and the guard multiplies every block with one kernel whatever the number
of rows (``planets_mlops.guard._block_product``); ``tests/pure/test_coalesce.py`` checks it
on real images. Nothing here imports BentoML.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

Answer = tuple[list[dict[str, Any]], np.ndarray | None]


class Coalescer:
    """Runs ``answer`` once for every model batch submitted in the same turn of the event loop.

    Args:
        answer: Model batch ``(n, size, size, channels)`` -> (one answer per row, the
            embeddings or None), e.g. ``LoadedModel.answer``.
        max_rows: Most rows in one call; a turn with more starts a new call for the rest.
        alone: Whether the calling request is the only one running; a batch submitted alone,
            with nothing pending, is answered at once. None: never.
    """

    def __init__(
        self,
        answer: Callable[[np.ndarray], Answer],
        max_rows: int = 256,
        alone: Callable[[], bool] | None = None,
    ) -> None:
        self._answer = answer
        self.max_rows = max_rows
        self._alone = alone
        self._pending: list[tuple[np.ndarray, asyncio.Future[Answer]]] = []
        self._scheduled = False
        # Calls made and rows answered (for the tests and the benchmark's curiosity).
        self.calls = 0
        self.rows = 0

    async def answer(self, batch: np.ndarray) -> Answer:
        """The answers for the rows of ``batch``, computed with the other batches of this turn.

        Raises:
            Exception: whatever ``answer`` raised for the call this batch was part of.
        """
        if not self._pending and self._alone is not None and self._alone():
            outcome = self._answer(batch)
            self.calls += 1
            self.rows += len(batch)
            return outcome
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._pending.append((batch, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        while pending:
            group: list[tuple[np.ndarray, asyncio.Future[Answer]]] = []
            rows = 0
            while pending and (not group or rows + len(pending[0][0]) <= self.max_rows):
                group.append(pending.pop(0))
                rows += len(group[-1][0])
            self._run(group)

    def _run(self, group: list[tuple[np.ndarray, asyncio.Future[Answer]]]) -> None:
        live = [(batch, future) for batch, future in group if not future.done()]
        if not live:
            return
        try:
            if len(live) == 1:
                results, embeddings = self._answer(live[0][0])
                outcomes: list[Answer] = [(results, embeddings)]
            else:
                results, embeddings = self._answer(np.concatenate([batch for batch, _ in live]))
                outcomes, start = [], 0
                for batch, _ in live:
                    end = start + len(batch)
                    outcomes.append(
                        (results[start:end], None if embeddings is None else embeddings[start:end])
                    )
                    start = end
        except Exception as exc:  # noqa: BLE001 - each request answers it as it did alone
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        self.calls += 1
        self.rows += sum(len(batch) for batch, _ in live)
        for (_, future), outcome in zip(live, outcomes):
            if not future.done():
                future.set_result(outcome)
