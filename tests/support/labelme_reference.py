"""labelme's own ``shape_to_mask``, the reference our rasterizer must match pixel for pixel.

labelme (``pip install labelme==6.3.1 --no-deps``; 7.x needs Python 3.12) imports Qt and
onnxruntime from its package ``__init__``, but its ``utils/shape.py`` needs only numpy and
Pillow. When the full import fails for lack of those GUI dependencies, the module file is
loaded on its own, with a stand-in for the one type (``ShapeDict``) it imports for
annotations. Either way the function under comparison is labelme's unmodified code.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest


def labelme_shape_to_mask() -> Callable:
    """labelme's ``shape_to_mask``; skips the test when labelme is not installed."""
    spec = importlib.util.find_spec("labelme")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "labelme is not installed (pip install labelme==6.3.1 --no-deps): "
            "it is the reference for the pixel-identity tests"
        )
    try:
        from labelme.utils.shape import shape_to_mask

        return shape_to_mask
    except ImportError:
        pass
    source = Path(spec.submodule_search_locations[0]) / "utils" / "shape.py"
    package, label_file = types.ModuleType("labelme"), types.ModuleType("labelme._label_file")
    package.__path__ = []
    label_file.ShapeDict = dict
    saved = {name: sys.modules.get(name) for name in ("labelme", "labelme._label_file")}
    sys.modules.update({"labelme": package, "labelme._label_file": label_file})
    try:
        module_spec = importlib.util.spec_from_file_location("_labelme_shape_reference", source)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module.shape_to_mask
