"""Load weights into a Keras 3 model by layer name.

Two file layouts are read:

- **Keras 2 HDF5** (matterport's `mask_rcnn_*.h5`, Keras-applications ImageNet files): the
  root (or a `model_weights` group, in full-model files) has the attribute `layer_names`;
  each layer group has `weight_names` such as `conv1/kernel:0`, stored at
  `/<layer>/<weight name>`. A nested sub-model (`rpn_model`) is one group whose weight
  names carry the sub-layer name (`rpn_conv_shared/kernel:0`).
- **Keras 3 `.weights.h5`** (`model.save_weights`): `layers/<key>/vars/<i>` with the layer's
  name in the `name` attribute of `vars`, nested models under `layers/<key>/layers/...`.

Every shape is checked before any variable is assigned, so a failed load changes nothing.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import h5py
import keras
import numpy as np

from mrcnn.errors import InvalidInput, MissingInput

_EXCLUDE_HINT = (
    "If this layer is meant to differ (e.g. another NUM_CLASSES), skip it with "
    "load_weights(..., exclude=[{name!r}])."
)


@dataclass(frozen=True)
class _Assignment:
    """One file dataset bound for one model variable."""

    layer: str  # the layer name matched in the file (reported to the caller)
    label: str  # the weight's name, for error messages
    variable: keras.Variable
    dataset: h5py.Dataset


def load_weights(
    model: keras.Model,
    filepath: str | os.PathLike,
    by_name: bool = False,
    exclude: Sequence[str] | None = None,
) -> list[str]:
    """Loads a Keras 2 `.h5` or Keras 3 `.weights.h5` file into `model`.

    Args:
        model: A built Keras 3 model with matterport's layer names.
        filepath: Path of the HDF5 weight file.
        by_name: Match file layers to model layers by name (layers missing on either side
            are skipped). Otherwise the file must describe this model: Keras 2 files are
            assigned in order to the model's layers that have weights, Keras 3 files by
            name with every file layer required to exist in the model.
        exclude: Names of the file's layers (top level, as stored) to leave untouched,
            e.g. `["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]` when
            the class count differs. Names without weights are accepted.

    Returns:
        Names of the layers that received weights, in file order.

    Raises:
        FileNotFoundError: `filepath` does not exist.
        ValueError: The file is not a Keras HDF5 weight file, does not fit the model
            (layer or weight counts), or a weight's shape differs from its variable's.
    """
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise MissingInput(f"Weight file not found: {path}")
    excluded = set(exclude or ())
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise InvalidInput(f"{path} is not a readable HDF5 weight file ({err}).") from err
    with file:
        if _is_keras3(file):
            if not by_name and not excluded and path.endswith(".weights.h5"):
                model.load_weights(path)
                return [layer.name for layer in model.layers if layer.weights]
            plan = _plan_keras3(model, file["layers"], by_name, excluded)
        else:
            plan = _plan_keras2(model, _keras2_root(file, path), by_name, excluded)
        _check_shapes(plan)
        for item in plan:
            item.variable.assign(np.asarray(item.dataset[()], dtype=item.variable.dtype))
    return list(dict.fromkeys(item.layer for item in plan))


def _check_shapes(plan: list[_Assignment]) -> None:
    """Raises ValueError at the first weight whose file shape differs from the model's."""
    for item in plan:
        expected = tuple(item.variable.shape)
        if item.dataset.shape != expected:
            raise InvalidInput(
                f"Layer {item.layer!r}, weight {item.label!r}: the file holds shape "
                f"{item.dataset.shape} but the model expects {expected}. "
                + _EXCLUDE_HINT.format(name=item.layer)
            )


def _decode(names: Sequence[str | bytes]) -> list[str]:
    """h5py returns attribute strings as str or bytes depending on how they were written."""
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _layer_index(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Maps layer names to layers, breadth first so top-level names win over nested ones."""
    index: dict[str, keras.layers.Layer] = {}
    queue = deque(_children(model))
    while queue:
        layer = queue.popleft()
        index.setdefault(layer.name, layer)
        queue.extend(_children(layer))
    return index


def _children(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Direct sub-layers; Keras 3 exposes them uniformly only through this private hook."""
    return layer._flatten_layers(include_self=False, recursive=False)


# ---------------------------------------------------------------------------------------
# Keras 2 layout
# ---------------------------------------------------------------------------------------


def _keras2_root(file: h5py.File, path: str) -> h5py.Group:
    """Returns the group holding `layer_names`: the root, or `model_weights` in model files."""
    if "layer_names" in file.attrs:
        return file
    if "model_weights" in file and "layer_names" in file["model_weights"].attrs:
        return file["model_weights"]
    raise InvalidInput(
        f"{path} is HDF5 but not a Keras weight file: no 'layer_names' attribute at the "
        "root or under 'model_weights', and no Keras 3 'layers' group."
    )


def _keras2_layers(root: h5py.Group) -> list[tuple[str, list[tuple[str, h5py.Dataset]]]]:
    """Lists `(layer name, [(weight name, dataset)])` for the file's layers with weights."""
    layers = []
    for name in _decode(root.attrs["layer_names"]):
        group = root[name]
        weight_names = _decode(group.attrs.get("weight_names", []))
        if weight_names:
            layers.append((name, [(w, group[w]) for w in weight_names]))
    return layers


def _plan_keras2(
    model: keras.Model, root: h5py.Group, by_name: bool, excluded: set[str]
) -> list[_Assignment]:
    """Pairs file layers with model layers (by name or in order) and binds their weights."""
    file_layers = [(n, w) for n, w in _keras2_layers(root) if n not in excluded]
    if by_name:
        index = _layer_index(model)
        pairs = [(n, index[n], w) for n, w in file_layers if n in index]
    else:
        model_layers = [
            layer for layer in model.layers if layer.weights and layer.name not in excluded
        ]
        if len(model_layers) != len(file_layers):
            raise InvalidInput(
                f"The file has {len(file_layers)} layers with weights but the model has "
                f"{len(model_layers)}; pass by_name=True to load the layers whose names "
                "match (and exclude=[...] for those that differ)."
            )
        pairs = [(n, layer, w) for layer, (n, w) in zip(model_layers, file_layers)]
    plan = []
    for name, layer, weights in pairs:
        plan.extend(_bind_keras2(name, layer, weights))
    return plan


def _split_weight_name(name: str) -> tuple[str, str]:
    """`'rpn_model/rpn_conv_shared/kernel:0'` -> `('rpn_conv_shared', 'kernel')`."""
    parts = re.sub(r":\d+$", "", name).split("/")
    return (parts[-2] if len(parts) > 1 else "", parts[-1])


def _bind_keras2(
    name: str, layer: keras.layers.Layer, weights: list[tuple[str, h5py.Dataset]]
) -> list[_Assignment]:
    """Binds one file layer's weights to `layer.weights`.

    Matched by (sub-layer, variable) name when both sides name the same set, else by
    variable name alone (a TimeDistributed wrapper stored under another scope), else in
    order as Keras 2 did (Keras 1 files name weights `conv1_W:0`).
    """
    variables = layer.weights
    if len(weights) != len(variables):
        raise InvalidInput(
            f"Layer {name!r}: the file has {len(weights)} weights "
            f"{[w for w, _ in weights]} but the model layer has {len(variables)} "
            f"{[v.path for v in variables]}. " + _EXCLUDE_HINT.format(name=name)
        )
    file_keys = [_split_weight_name(w) for w, _ in weights]
    model_keys = [_split_weight_name(v.path) for v in variables]
    order = _pair_by_key(file_keys, model_keys)
    if order is None:
        order = _pair_by_key([k[1] for k in file_keys], [k[1] for k in model_keys])
    if order is None:
        order = list(range(len(variables)))
    return [
        _Assignment(name, weight_name, variables[j], dataset)
        for (weight_name, dataset), j in zip(weights, order)
    ]


def _pair_by_key(file_keys: list, model_keys: list) -> list[int] | None:
    """For each file key, the index of the equal model key; None unless a clean bijection."""
    if len(set(model_keys)) != len(model_keys) or set(file_keys) != set(model_keys):
        return None
    position = {key: i for i, key in enumerate(model_keys)}
    return [position[key] for key in file_keys]


# ---------------------------------------------------------------------------------------
# Keras 3 layout
# ---------------------------------------------------------------------------------------


def _is_keras3(file: h5py.File) -> bool:
    return "layer_names" not in file.attrs and isinstance(file.get("layers"), h5py.Group)


def _keras3_saveables(group: h5py.Group) -> Iterator[tuple[str, h5py.Group]]:
    """Yields `(layer name, group)` for the saveables directly below `group`.

    A saveable is a group with a `vars` child; other groups (`layers`) are containers.
    """
    for key, child in group.items():
        if key == "vars" or not isinstance(child, h5py.Group):
            continue
        if "vars" in child:
            yield _decode([child["vars"].attrs.get("name", key)])[0], child
        else:
            yield from _keras3_saveables(child)


def _has_datasets(group: h5py.Group) -> bool:
    # visititems stops at, and returns, the first non-None result
    return group.visititems(lambda _, obj: isinstance(obj, h5py.Dataset) or None) is not None


def _plan_keras3(
    model: keras.Model, layers: h5py.Group, by_name: bool, excluded: set[str]
) -> list[_Assignment]:
    """Pairs the file's top-level layers with model layers by name and binds their weights."""
    index = _layer_index(model)
    plan = []
    for name, group in _keras3_saveables(layers):
        if name in excluded or not _has_datasets(group):
            continue
        if name not in index:
            if by_name:
                continue
            raise InvalidInput(
                f"The file has weights for layer {name!r}, which the model lacks; pass "
                "by_name=True to skip such layers."
            )
        plan.extend(_bind_keras3(name, index[name], group))
    return plan


def _bind_keras3(name: str, layer: keras.layers.Layer, group: h5py.Group) -> list[_Assignment]:
    """Binds a saveable's `vars/<i>` to the layer's own variables, then recurses by name."""
    targets: dict = {}
    layer.save_own_variables(targets)  # the same slots, in the same order, as the file
    stored = group["vars"]
    if len(stored) != len(targets):
        raise InvalidInput(
            f"Layer {name!r}: the file has {len(stored)} variables for {layer.name!r} but "
            f"the model layer has {len(targets)}. " + _EXCLUDE_HINT.format(name=name)
        )
    plan = []
    for key, variable in targets.items():
        if not isinstance(variable, keras.Variable):
            raise InvalidInput(
                f"Layer {layer.name!r} stores derived values (LoRA or quantization); load "
                "it with model.load_weights instead."
            )
        plan.append(_Assignment(name, variable.path, variable, stored[key]))
    children = {child.name: child for child in _children(layer)}
    for child_name, child_group in _keras3_saveables(group):
        if child_name in children:
            plan.extend(_bind_keras3(name, children[child_name], child_group))
        elif _has_datasets(child_group):
            raise InvalidInput(
                f"Layer {name!r}: the file has weights for sub-layer {child_name!r}, which "
                f"the model's {layer.name!r} lacks."
            )
    return plan
