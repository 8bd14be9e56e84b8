"""planets_mlops.train.epochs_ahead: the training batches of every epoch, made by a thread ahead.

Real threads and real NumPy batches; the training that reads them (the same weights to the
bit as batches made on demand) is tests/component/test_train_evaluate.py's.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from planets_mlops.train import epochs_ahead


def _batches(rng_seed: int = 7, count: int = 5):
    """A generator function whose batches draw on one generator, as training's augmentation does."""
    rng = np.random.default_rng(rng_seed)

    def generate():
        for index in range(count):
            yield rng.standard_normal((4, 3)) + index, np.full(4, index)

    return generate


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "training-batches"}


def test_the_batches_and_their_order_are_those_of_calling_generate_once_per_epoch():
    on_demand = _batches()  # one generator function: its draws go on from epoch to epoch
    expected = [batch for _ in range(3) for batch in on_demand()]
    got = list(epochs_ahead(_batches(), 3)())
    assert len(got) == 15
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert np.array_equal(x, ex) and np.array_equal(y, ey)
    assert not _threads()


def test_the_thread_runs_ahead_of_the_reader_by_at_most_depth():
    made = []

    def generate():
        for index in range(20):
            made.append(index)
            yield index

    items = epochs_ahead(generate, 1, depth=3)()
    assert next(items) == 0
    deadline = time.monotonic() + 5
    while len(made) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # One taken, three waiting in the queue, one made and waiting to be put.
    assert len(made) == 5
    assert list(items) == list(range(1, 20))


def test_an_error_in_the_thread_is_raised_where_its_item_would_come():
    def generate():
        yield 1
        raise ValueError("shard 3 is truncated")

    items = epochs_ahead(generate, 2)()
    assert next(items) == 1
    with pytest.raises(ValueError, match="shard 3 is truncated"):
        next(items)
    assert not _threads()


def test_a_reader_that_stops_early_stops_the_thread():
    items = epochs_ahead(_batches(count=1000), 10, depth=2)()
    next(items)
    items.close()  # what fit does when a callback stops training
    assert not _threads()
