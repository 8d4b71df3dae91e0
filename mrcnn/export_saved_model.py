"""TensorFlow SavedModel exports: ``keras.export.ExportArchive`` with ``serving_default``.

The SavedModel loads in ``tf.saved_model.load``, ``saved_model_cli run`` and the C++ loader, so
in TF Serving. The weights are stored once: only the variables the endpoint reads are tracked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mrcnn.export_formats import ExportFormat, Predict

SAVED_MODEL_FILE = "saved_model.pb"  # + variables/ beside it
SIGNATURE = "serving_default"


def write_saved_model(predict: Any, folder: Path) -> None:
    """Write the traced predict function as a SavedModel with the ``serving_default`` signature."""
    import keras

    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's own variables are saved, and tracking the model
    # as well would store every weight a second time under `variables/`.
    archive.add_endpoint(SIGNATURE, predict, input_signature=predict.input_signature)
    archive.write_out(str(folder), verbose=False)


def load_saved_model(folder: Path, precision: str, threads: int | None) -> Predict:
    """The ``serving_default`` signature (it runs as exported: precision and threads unused)."""
    import tensorflow as tf

    return tf.saved_model.load(str(folder)).signatures[SIGNATURE]


FORMAT = ExportFormat(
    name="saved_model",
    title="SavedModel",
    help="TensorFlow SavedModel (tf.saved_model.load, saved_model_cli, TF Serving)",
    graph_file=SAVED_MODEL_FILE,
    runtime="tensorflow",
    write=write_saved_model,
    load=load_saved_model,
)
