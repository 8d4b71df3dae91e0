"""Label Studio's own brush codec (``label_studio_converter.brush``), the reference our brush
RLE decoder must agree with.

``label-studio-converter`` (``pip install label-studio-converter==0.0.59 --no-deps``; its
declared dependencies pull nltk and more, none of them needed here) imports its converter,
and so ujson and others, from its package ``__init__``. ``brush.py`` itself needs only numpy
and Pillow, so the module file is loaded on its own: the functions under comparison are Label
Studio's unmodified code, and the project never imports it.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

INSTALL = "pip install label-studio-converter==0.0.59 --no-deps"


def label_studio_brush() -> types.ModuleType:
    """The ``brush`` module; skips the test when label-studio-converter is not installed."""
    spec = importlib.util.find_spec("label_studio_converter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            f"label-studio-converter is not installed ({INSTALL}): its brush codec is "
            "the reference for the brush RLE tests"
        )
    source = Path(spec.submodule_search_locations[0]) / "brush.py"
    module_spec = importlib.util.spec_from_file_location("_label_studio_brush_reference", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
