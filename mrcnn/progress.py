"""Training progress as plain lines when the output is not a terminal.

Keras's progress bar redraws itself with carriage returns and colour codes; in a log file,
Prefect's logs or CI that becomes hundreds of unreadable lines per epoch. Outside a terminal
``MaskRCNN.train(verbose="auto")`` uses :class:`ProgressLines` instead: one line every
``every`` steps and one per epoch, with the losses and seconds per step.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import keras


class ProgressLines(keras.callbacks.Callback):
    """Print ``epoch E/N step S/T  loss ...  X s/step`` lines to ``stream``; with a deadline
    (``until``, a ``time.monotonic()`` value) ``epoch E`` and the minutes left instead of N."""

    def __init__(
        self, every: int = 50, stream: IO[str] | None = None, until: float | None = None
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.stream = stream
        self.until = until
        self._epoch = 0
        self._started = 0.0
        self._done = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._started = time.perf_counter()
        self._done = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = batch + 1
        self._done = step
        if step % self.every == 0 and step != self._steps():
            self._write(f"step {step}/{self._steps() or '?'}", logs, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        steps = self._done or self._steps() or 1
        self._write(f"done in {time.perf_counter() - self._started:.0f} s", logs, steps)

    def _steps(self) -> int:
        return int(self.params.get("steps") or 0)

    def _write(self, where: str, logs: dict[str, Any] | None, steps: int) -> None:
        per_step = (time.perf_counter() - self._started) / max(steps, 1)
        losses = "  ".join(
            f"{name} {float(value):.4f}" for name, value in (logs or {}).items() if "loss" in name
        )
        if self.until is None:
            epoch, left = f"{self._epoch + 1}/{self.params.get('epochs', '?')}", ""
        else:
            minutes = max(self.until - time.monotonic(), 0.0) / 60
            epoch, left = f"{self._epoch + 1}", f"  {minutes:.1f} min to the deadline"
        line = f"epoch {epoch} {where}  {losses}  {per_step:.2f} s/step{left}"
        stream = self.stream or sys.stdout
        print(line, file=stream, flush=True)


def progress_settings(
    verbose: int | str, stream: IO[str] | None = None, until: float | None = None
) -> tuple[int | str, list[keras.callbacks.Callback]]:
    """Keras's ``verbose`` and the extra callbacks for a ``fit`` call.

    ``"auto"`` keeps Keras's bar in a terminal and prints :class:`ProgressLines` elsewhere
    (with the minutes left before ``until``); an explicit ``0``, ``1`` or ``2`` is passed to
    Keras as it is.
    """
    target = stream or sys.stdout
    if verbose != "auto" or _is_terminal(target):
        return verbose, []
    return 0, [ProgressLines(stream=stream, until=until)]


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
