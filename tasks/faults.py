"""Named crash points for the fault-injection tests of the commit protocol.

``crash_point("intent-written")`` does nothing unless the environment variable
``MRCNN_CRASH_AT`` names that point; then the process kills itself with SIGKILL there, as a
power cut or the OOM killer would. ``MRCNN_CRASH_AT=temporary-written:/overlays/`` stops only
where the point's detail (here the file being written) contains ``/overlays/``. The tests use
it to stop a run between any two steps and check that the next run repairs what was left.
"""

from __future__ import annotations

import os
import signal

CRASH_VARIABLE = "MRCNN_CRASH_AT"


def crash_point(name: str, detail: str = "") -> None:
    """SIGKILL this process when ``MRCNN_CRASH_AT`` is ``name`` or ``name:<part of detail>``."""
    target, _, where = os.environ.get(CRASH_VARIABLE, "").partition(":")
    if target == name and where in detail:
        os.kill(os.getpid(), signal.SIGKILL)
