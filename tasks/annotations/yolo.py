"""Ultralytics YOLO segmentation datasets to image records, and the lines an exporter writes.

Layout: ``data.yaml`` (or ``dataset.yaml``) at the input root, its ``names`` a list or an
``{index: name}`` map; label files ``.../labels/<split>/<stem>.txt`` beside the images
``.../images/<split>/<stem>.<ext>``. A label file's image is found by replacing the last
``labels`` folder of its path with ``images`` and trying the suffixes ``.jpg .jpeg .png .bmp
.tif .tiff .webp`` in that order, then the same in upper case. The YAML's ``path``, ``train``
and ``val`` are not used: the output split is the stable hash every format gets, and images
without a label file are not read.

Each non-blank line of a label file is one instance, coordinates normalised to ``[0, 1]`` by
the image width and height:

* ``class x1 y1 x2 y2 x3 y3 ...``: a polygon of at least 3 points (Ultralytics' segments);
* ``class cx cy w h``, exactly 4 numbers: a detection box, converted as a filled box
  instance, so that detection labels mixed into a segmentation set are kept.

Shapes are drawn with labelme's rasterizer like every other source. A line with another
count of numbers, or a class index outside ``names``, is a DROPPED issue; coordinates
outside ``[0, 1]`` are clipped (CLIPPED). An empty label file is an image without objects.
Images are turned upright by their EXIF orientation, as Ultralytics loads them. Without a
readable YAML every label file is skipped, with the reason.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence

import yaml

from . import rasterize
from .formats import AnnotationFormat
from .images import upright_image
from .records import Fetch, ImageRecord, Issue, IssueKind, ReadResult

YAML_NAMES = ("data.yaml", "dataset.yaml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_yolo(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one YOLO label file.

    Args:
        name: path of the ``.txt`` relative to the input root (the dataset root), e.g.
            ``"labels/train/a.txt"``.
        data: its bytes.
        fetch: reads a file relative to the input root (the YAML and the image).

    Returns:
        One item: the image with its instances, or a SKIPPED issue saying why not.
    """
    result = ReadResult(items=1)
    try:
        names = _names(fetch)
        result.labels = tuple(names[index] for index in sorted(names))
        lines = _lines(data)
        record = _image(name, fetch)
    except ValueError as error:
        result.skip(name, str(error))
        return result
    instances = []
    for number, tokens in lines:
        item = f"line {number}"
        try:
            label, shape_type, xy = _shape(tokens, names, record.height, record.width)
        except ValueError as error:
            result.issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
            continue
        item = f"line {number} ({label})"
        mask = rasterize.shape_to_mask(shape_type, xy, record.height, record.width)
        clipped = rasterize.is_outside(
            rasterize.shape_extent(shape_type, xy), record.height, record.width
        )
        result.admit(instances, name, item, label, mask, clipped)
    result.images.append(
        ImageRecord(
            record.file_name,
            name,
            record.height,
            record.width,
            tuple(instances),
            record.image_bytes,
        )
    )
    return result


def yolo_line(
    class_index: int, polygon: Sequence[tuple[float, float]], height: int, width: int
) -> str:
    """One label line ``class x1 y1 x2 y2 ...`` for a polygon given in pixels.

    Coordinates are divided by the image size, clipped to ``[0, 1]`` (Ultralytics rejects
    labels outside) and written with at most 6 decimals.

    Raises:
        ValueError: a negative class, fewer than 3 points, or an empty image size.
    """
    if isinstance(class_index, bool) or not isinstance(class_index, int) or class_index < 0:
        raise ValueError(f"class index must be a non-negative integer, got {class_index!r}")
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    values = [
        min(max(v / size, 0.0), 1.0) for x, y in polygon for v, size in ((x, width), (y, height))
    ]
    return " ".join([str(class_index)] + [f"{v:.6f}".rstrip("0").rstrip(".") for v in values])


def data_yaml(
    names: Sequence[str], path: str = ".", train: str = "images/train", val: str = "images/val"
) -> str:
    """The text of a ``data.yaml`` naming the classes in index order.

    Args:
        names: class names; the line class index is the position here.
        path, train, val: dataset root and the split image folders, as Ultralytics reads them.

    Raises:
        ValueError: no names, or a repeated one.
    """
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must be non-empty and unique, got {list(names)}")
    document = {
        "path": path,
        "train": train,
        "val": val,
        "names": {index: str(name) for index, name in enumerate(names)},
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _names(fetch: Fetch) -> dict[int, str]:
    """Class index -> name from the dataset YAML at the input root."""
    for yaml_name in YAML_NAMES:
        try:
            text = fetch(yaml_name)
            break
        except FileNotFoundError:
            continue
    else:
        raise ValueError(
            "no data.yaml (or dataset.yaml) at the input root: YOLO class names "
            "come from its 'names'"
        )
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"malformed {yaml_name} ({' '.join(str(error).split())})") from None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if (
        not isinstance(names, dict)
        or not names
        or not all(
            isinstance(k, int)
            and not isinstance(k, bool)
            and k >= 0
            and isinstance(v, (str, int))
            and not isinstance(v, bool)
            and str(v).strip()
            for k, v in names.items()
        )
    ):
        raise ValueError(
            f"{yaml_name} 'names' must be a non-empty list or {{index: name}} map of class names"
        )
    return {index: str(value).strip() for index, value in names.items()}


def _lines(data: bytes) -> list[tuple[int, list[str]]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("label file is not UTF-8 text") from None
    return [
        (number, line.split())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _image(name: str, fetch: Fetch) -> ImageRecord:
    """Find the label file's image (upright); the record has no instances yet."""
    folders = name.split("/")[:-1]
    if "labels" not in folders:
        raise ValueError("label file is not below a 'labels' folder, so its image cannot be found")
    last = len(folders) - 1 - folders[::-1].index("labels")
    folders[last] = "images"
    stem = "/".join(folders + [posixpath.splitext(posixpath.basename(name))[0]])
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        try:
            content = fetch(stem + suffix)
        except FileNotFoundError:
            continue
        height, width, upright = upright_image(content, stem + suffix)
        return ImageRecord(stem + suffix, name, height, width, image_bytes=upright)
    raise ValueError(
        f"image {stem}.* not found (tried {' '.join(IMAGE_SUFFIXES)}, also in upper case)"
    )


def _shape(
    tokens: list[str], names: dict[int, str], height: int, width: int
) -> tuple[str, str, list[tuple[float, float]]]:
    """A line's label, shape type and points in pixels."""
    try:
        values = [float(token) for token in tokens]
    except ValueError:
        raise ValueError(f"values must be numbers, got {' '.join(tokens)[:60]!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("values must be finite numbers")
    if not values[0].is_integer():
        raise ValueError(f"class {tokens[0]!r} is not an integer index")
    label = names.get(int(values[0]))
    if label is None:
        raise ValueError(
            f"class {int(values[0])} is not among the dataset YAML's names "
            f"(indices {min(names)}..{max(names)})"
        )
    coordinates = values[1:]
    if len(coordinates) == 4:
        cx, cy, w, h = coordinates
        corners = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy + h / 2)]
        return (
            label,
            "rectangle",
            [(rasterize.scaled(x, width), rasterize.scaled(y, height)) for x, y in corners],
        )
    if len(coordinates) < 6 or len(coordinates) % 2:
        raise ValueError(
            f"expected 'class cx cy w h' (a box) or 'class x1 y1 x2 y2 x3 y3 ...' "
            f"(a polygon), got {len(coordinates)} coordinates"
        )
    return (
        label,
        "polygon",
        [
            (rasterize.scaled(x, width), rasterize.scaled(y, height))
            for x, y in zip(coordinates[0::2], coordinates[1::2])
        ],
    )


def is_yolo_source(relative: str) -> bool:
    """A ``*.txt`` below a ``labels`` folder (not ``classes.txt`` or other text beside it)."""
    return relative.lower().endswith(".txt") and "labels" in relative.split("/")[:-1]


FORMAT = AnnotationFormat(
    "yolo",
    "Ultralytics YOLO segmentation labels; --input is the folder of data.yaml",
    "labels/**/*.txt",
    is_yolo_source,
    read_yolo,
)
