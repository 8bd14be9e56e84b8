"""The warm training child a local run starts before its training task (planets_mlops.warm_trainer).

(Pipeline tier: each test starts a real warm child, which imports TensorFlow, and trains.)
The task hands the child its job over a Unix socket with its standard output and error; the
model folder must be the one a new child writes, and anything the warm child cannot take
must still be trained, by a new child.
"""

import json
import os
import select
import socket

import numpy as np
import pytest

from planets_mlops import warm_trainer
from planets_mlops.model_folder import load_session, run_outputs
from planets_mlops.prepared import load_split
from planets_mlops.train import TrainParams, train_model_in_child

TINY = TrainParams(epochs=2, conv_size=8, dense_size=16, lr=0.01, lr_schedule="constant")


@pytest.fixture(scope="module")
def new_child_model(small_prepared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("new-child") / "model"
    return folder, train_model_in_child(small_prepared, folder, TINY)


def _same_model(first, second, prepared):
    for name in ("classes.json", "preprocess.json", "history.json", "guard.json", "guard_bank.npy"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    images, _ = load_split(prepared, "validation")
    for a, b in zip(
        run_outputs(load_session(first), images), run_outputs(load_session(second), images), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_the_warm_child_trains_what_a_new_child_trains_and_logs_to_the_task(
    small_prepared, new_child_model, tmp_path, capfd, caplog
):
    caplog.set_level("INFO", logger="planets_mlops.warm_trainer")
    with warm_trainer.warm_trainer() as path:
        assert os.environ[warm_trainer.ENV] == str(path)
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        result = train_model_in_child(small_prepared, tmp_path / "model", TINY)
    assert warm_trainer.ENV not in os.environ and not path.parent.exists()
    assert "Training in the warm trainer" in caplog.text
    assert "declined" not in caplog.text and "new process" not in caplog.text
    # The epochs were logged by the warm child into this process's own output (fd 1).
    out = capfd.readouterr().out
    assert "progress: epoch 2 of 2" in out, out[-2000:]
    folder, expected = new_child_model
    assert result.history == expected.history
    assert result.metadata() | {"train_seconds": 0} == expected.metadata() | {"train_seconds": 0}
    _same_model(tmp_path / "model", folder, small_prepared)


def test_a_job_from_another_environment_is_declined_and_trained_by_a_new_child(
    small_prepared, new_child_model, tmp_path, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="planets_mlops.warm_trainer")
    with warm_trainer.warm_trainer() as path:
        # A variable the warm child was started without (set for this task alone).
        monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
        result = train_model_in_child(small_prepared, tmp_path / "model", TINY)
        monkeypatch.delenv("TF_NUM_INTEROP_THREADS")
        # Declined, the warm child still waits for a job that matches.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))
        probe.close()
    assert "declined the job ($TF_NUM_INTEROP_THREADS differs)" in caplog.text
    folder, expected = new_child_model
    assert result.history == expected.history
    _same_model(tmp_path / "model", folder, small_prepared)


def test_a_task_whose_warm_child_is_gone_trains_in_a_new_child(
    small_prepared, new_child_model, tmp_path, monkeypatch, caplog
):
    caplog.set_level("INFO", logger="planets_mlops.warm_trainer")
    monkeypatch.setenv(warm_trainer.ENV, str(tmp_path / "no-socket-here"))
    result = train_model_in_child(small_prepared, tmp_path / "model", TINY)
    assert "No warm trainer at" in caplog.text
    assert result.history == new_child_model[1].history


def test_a_bad_job_is_declined_and_its_descriptors_closed():
    with warm_trainer.warm_trainer() as path:
        answers = []
        # A job that matches this process but names a working folder that does not exist.
        elsewhere = {**warm_trainer._identity(), "argv": ["a", "b", "c", "d"], "cwd": "/no/such/folder"}
        for body in (b"not json", json.dumps({"argv": ["../x"]}).encode(), json.dumps(elsewhere).encode()):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
                bad.connect(str(path))
                read, write = os.pipe()
                socket.send_fds(bad, [len(body).to_bytes(4, "big")], [write, write])
                bad.sendall(body)
                os.close(write)
                answers.append(json.loads(bad.makefile("rb").readline()))
                # The warm child closed both copies of the write end: the pipe reads as ended.
                assert select.select([read], [], [], 60)[0] and os.read(read, 1) == b""
                os.close(read)
        # Still waiting for a job it can take.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(path))
    assert [sorted(a) for a in answers] == [["declined"], ["declined"], ["declined"]]
    assert "unreadable job" in answers[0]["declined"] and "four arguments" in answers[1]["declined"]
    assert "no working folder '/no/such/folder'" in answers[2]["declined"]


def test_a_run_whose_socket_cannot_be_made_goes_on_without_a_warm_child(monkeypatch, tmp_path, caplog):
    # A $TMPDIR so long that the socket's path is over the system's limit (108 bytes on Linux).
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    with warm_trainer.warm_trainer() as path:
        assert path is None and warm_trainer.ENV not in os.environ
    assert "No warm training child" in caplog.text and list(deep.iterdir()) == []


def test_a_warm_child_bound_at_a_path_sends_the_result_back_over_the_socket(
    small_prepared, new_child_model, tmp_path, monkeypatch, caplog
):
    """``python -m planets_mlops.train --warm-at PATH``, as the warm training container runs it:
    it binds the socket itself, and writes the result file in a folder of its own and sends its
    text back (in the images the task's own result path is in another container's /tmp)."""
    import subprocess
    import sys
    import time

    caplog.set_level("INFO", logger="planets_mlops.warm_trainer")
    path = tmp_path / "socket"
    child = subprocess.Popen([sys.executable, "-m", "planets_mlops.train", "--warm-at", str(path)])
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists(), "the warm child bound no socket"
        monkeypatch.setenv(warm_trainer.ENV, str(path))
        result = train_model_in_child(small_prepared, tmp_path / "model", TINY)
        assert child.wait(timeout=60) == 0  # it served its one job and ended
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "Training in the warm trainer" in caplog.text and "new process" not in caplog.text
    folder, expected = new_child_model
    assert result.history == expected.history
    assert result.metadata() | {"train_seconds": 0} == expected.metadata() | {"train_seconds": 0}
    _same_model(tmp_path / "model", folder, small_prepared)
