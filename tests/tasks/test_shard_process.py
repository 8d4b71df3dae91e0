"""How `tasks.inference.shard_process` names a dead child's end."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from tasks.inference.shard_process import _exit_cause


def _sleep() -> None:
    time.sleep(60)


def test_the_signal_is_named_when_another_thread_reaps_the_child_first():
    """The pool's own thread may `waitpid` the dead child before we do; ours then finds no
    child, and the code appears only once that thread records it (as `Popen.poll` does)."""
    process = multiprocessing.get_context("spawn").Process(target=_sleep)
    process.start()
    os.kill(process.pid, signal.SIGKILL)
    _, status = os.waitpid(process.pid, 0)  # the other thread's waitpid wins

    def record_later() -> None:
        time.sleep(0.5)
        process._popen.returncode = os.waitstatus_to_exitcode(status)

    recorder = threading.Thread(target=record_later)
    recorder.start()
    try:
        assert _exit_cause([process]) == "killed by SIGKILL"
    finally:
        recorder.join()
