"""Python modules written by a test, to see whether loading a stored model imports code.

`side_effect_module` writes a module that leaves a marker file when it is imported, in a
folder on ``sys.path``: a stored config naming it could import it, so a test can tell whether
it did. `backbone_module` writes a real callable backbone (ResNet-18 under another name) for
the tests where the caller allows one.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import uuid
from pathlib import Path
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class WrittenModule:
    """A module a test wrote: its import name and the marker its import leaves."""

    name: str
    marker: Path

    def reference(self, attribute: str = "backbone") -> str:
        """``module:attribute``, as a stored config names a callable."""
        return f"{self.name}:{attribute}"

    def imported(self) -> bool:
        """Whether anything imported the module (now or earlier, and then forgot it)."""
        return self.name in sys.modules or self.marker.exists()


def side_effect_module(folder: Path) -> WrittenModule:
    """A module in ``folder`` whose import writes a marker file; it defines ``backbone``."""
    return _write(
        folder,
        "side_effect",
        "def backbone(input_image, stage5=True, train_bn=False):\n"
        "    raise AssertionError('never called')\n",
    )


def backbone_module(folder: Path) -> WrittenModule:
    """A module in ``folder`` defining ``backbone``: ResNet-18 under another name."""
    return _write(
        folder,
        "backbone",
        "from mrcnn.layers.backbone import resnet_graph\n\n\n"
        "def backbone(input_image, stage5=True, train_bn=False):\n"
        "    return resnet_graph(input_image, 'resnet18', stage5, "
        "train_bn)\n",
    )


def imported_module(module: WrittenModule) -> ModuleType:
    """Import a written module, as code that names it does."""
    return importlib.import_module(module.name)


def _write(folder: Path, kind: str, body: str) -> WrittenModule:
    name = f"mrcnn_test_{kind}_{uuid.uuid4().hex[:8]}"
    marker = folder / f"{name}.imported"
    (folder / f"{name}.py").write_text(
        "from pathlib import Path\n\n"
        f"Path({str(marker)!r}).write_text('imported')  # the import side effect\n\n\n" + body
    )
    return WrittenModule(name, marker)
