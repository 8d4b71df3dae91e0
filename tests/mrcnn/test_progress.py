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
    model.fit(x, y, batch_size=2, epochs=2, verbose=0,
              callbacks=[ProgressLines(every=2, stream=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 * (2 + 1)  # steps 2 and 4 of 6, then the epoch's line, twice
    assert lines[0].startswith("epoch 1/2 step 2/6  loss ") and lines[0].endswith(" s/step")
    assert lines[2].startswith("epoch 1/2 done in ") and lines[5].startswith("epoch 2/2 done")
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    with pytest.raises(ValueError, match="every"):
        ProgressLines(every=0)
