"""Training progress outside a terminal: plain lines with losses and s/step, no bar."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest

from mrcnn.progress import ProgressLines, progress_settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_outside_a_terminal_auto_means_lines_and_inside_it_keras_s_bar():
    verbose, callbacks = progress_settings("auto", io.StringIO())
    assert verbose == 0 and [type(c) for c in callbacks] == [ProgressLines]
    assert progress_settings("auto", Terminal()) == ("auto", [])
    assert progress_settings(2, io.StringIO()) == (2, [])


def test_a_fit_prints_one_line_every_n_steps_and_one_per_epoch():
    stream = io.StringIO()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((12, 2), np.float32), np.zeros((12, 1), np.float32)
    model.fit(
        x, y, batch_size=2, epochs=2, verbose=0, callbacks=[ProgressLines(every=2, stream=stream)]
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 * (2 + 1)  # steps 2 and 4 of 6, then the epoch's line, twice
    assert lines[0].startswith("epoch 1/2 step 2/6  loss ") and lines[0].endswith(" s/step")
    assert lines[2].startswith("epoch 1/2 done in ") and lines[5].startswith("epoch 2/2 done")
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    with pytest.raises(ValueError, match="every"):
        ProgressLines(every=0)


def test_a_deadline_ends_the_epoch_early_and_the_lines_count_down_to_it():
    """`Deadline` (MaskRCNN.train(until=...)) stops after the step that passes it; the lines
    then give no epoch total but the minutes left."""
    import time

    from mrcnn.training import Deadline

    stream = io.StringIO()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((12, 2), np.float32), np.zeros((12, 1), np.float32)
    deadline = Deadline(time.monotonic() + 600)
    model.fit(
        x,
        y,
        batch_size=2,
        epochs=1,
        verbose=0,
        callbacks=[deadline, ProgressLines(every=4, stream=stream, until=deadline.at)],
    )
    assert not deadline.reached
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("epoch 1 done in ") and last.endswith(" min to the deadline")
    assert 9.5 <= float(last.split()[-5]) <= 10.0
    stream, deadline = io.StringIO(), Deadline(time.monotonic())  # already past: one step
    history = model.fit(
        x,
        y,
        batch_size=2,
        epochs=5,
        verbose=0,
        callbacks=[deadline, ProgressLines(every=4, stream=stream, until=deadline.at)],
    )
    assert deadline.reached and len(history.epoch) == 1
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("epoch 1 done in ") and line.endswith("0.0 min to the deadline")
