"""Progress of long work: plain "n of N" lines in pod logs, a live bar in a terminal."""

import io

import pytest

from planets_mlops.app.local import ProgressLog
from planets_mlops.progress import Progress, ProgressLine, format_line, parse_line


def test_a_line_reads_back_with_its_figures():
    line = format_line("epoch", 3, 10, {"loss": 0.512345, "val_accuracy": 0.8, "elapsed": "4.0 s"})
    assert line == "progress: epoch 3 of 10 (loss 0.5123, val_accuracy 0.8, elapsed 4.0 s)"
    # kfp.local indents a step's output; a pod's log may prefix a timestamp.
    assert parse_line("    " + line) == ProgressLine(
        "epoch", 3, 10, "loss 0.5123, val_accuracy 0.8, elapsed 4.0 s"
    )
    assert parse_line("progress: labelled task 1 of 2") == ProgressLine("labelled task", 1, 2, "")
    assert parse_line("Epoch 3/10") is None


@pytest.mark.parametrize(("total", "lines"), [(5, 5), (20, 20), (1000, 11), (37, 11)])
def test_small_counts_show_every_item_large_ones_about_a_dozen_lines(total, lines):
    out = io.StringIO()
    progress = Progress("image fetched", total, out=out)
    for _ in range(total):
        progress.step()
    shown = [parse_line(line) for line in out.getvalue().splitlines()]
    assert len(shown) == lines
    assert shown[0].n == 1 and shown[-1].n == total and all(s.total == total for s in shown)
    assert [s.n for s in shown] == sorted({s.n for s in shown})


class Terminal(io.StringIO):
    def isatty(self):
        return True


KFP_OUTPUT = [
    "08:00:00.000 - INFO - Executing task 'train-model'\n",
    "    progress: epoch 1 of 2 (loss 1.2, val_accuracy 0.5)\n",
    "    progress: epoch 2 of 2 (loss 0.9, val_accuracy 0.75)\n",
    "08:00:09.000 - INFO - Task 'train-model' finished with status \x1b[92mSUCCESS\x1b[0m\n",
]


def test_progress_lines_reach_a_pipe_as_plain_lines():
    log, terminal = io.StringIO(), io.StringIO()
    stream = ProgressLog(log, terminal)
    for chunk in KFP_OUTPUT:
        stream.write(chunk)
    lines = terminal.getvalue().splitlines()
    assert lines[0] == "  > train-model ..."
    assert lines[1:3] == [
        "    train-model: epoch 1 of 2 (loss 1.2, val_accuracy 0.5)",
        "    train-model: epoch 2 of 2 (loss 0.9, val_accuracy 0.75)",
    ]
    assert lines[3].startswith("  + train-model: ok in ")
    assert "\x1b[" not in terminal.getvalue() + log.getvalue()


def test_progress_lines_become_a_bar_in_a_terminal():
    terminal = Terminal()
    stream = ProgressLog(io.StringIO(), terminal)
    for chunk in KFP_OUTPUT:
        stream.write(chunk)
    shown = terminal.getvalue()
    assert "train-model: epoch" in shown and "2/2" in shown and "val_accuracy 0.75" in shown
    assert "━" in shown  # rich's bar
    assert "  + train-model: ok in " in shown.rstrip().splitlines()[-1]  # after the bar, not in it
