"""Synthetic shapes: matterport's toy dataset, made deterministic.

Each image is a plain random background with 1..`max_shapes` squares, circles and
triangles of random colours. Image i's spec comes from `np.random.default_rng((seed, i))`,
so it is the same whatever `count` is. A shape is given by its centre (x, y) and half-size s:
a square spans [x-s, x+s] x [y-s, y+s], a circle has radius s, a triangle has its apex at
(x, y-s) and its base on y+s with half-width s / sin(60°). Later shapes are drawn over
earlier ones; masks show only the visible part.

Shorthand: H, W image size; N instances.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from mrcnn.boxes import compute_overlaps
from mrcnn.dataset import Dataset

SOURCE = "shapes"
# Source class id of each shape name.
SHAPE_CLASS_IDS = {"square": 1, "circle": 2, "triangle": 3}
# Candidates whose box overlaps an accepted shape's box more than this are rejected.
_MAX_BOX_IOU = 0.3
# A triangle's half-width over its half-height.
_TRIANGLE_SPREAD = 1 / math.sin(math.radians(60))

ShapeSpec = tuple[str, tuple[int, int, int], tuple[int, int, int]]


class ShapesDataset(Dataset):
    """Squares, circles and triangles on plain backgrounds (classes 1, 2, 3)."""

    def load_shapes(
        self,
        count: int,
        height: int,
        width: int,
        seed: int = 0,
        max_shapes: int = 4,
        min_size: int | None = None,
        max_size: int | None = None,
    ) -> None:
        """Registers `count` generated images of size `height` x `width`.

        Args:
            count: number of images.
            height, width: image size in pixels.
            seed: base seed; image i uses the generator seeded with (seed, i).
            max_shapes: most shapes drawn in one image (at least one is always drawn).
            min_size, max_size: half-size range in pixels; default 10..30 at 128 x 128,
                scaled with the shorter side.
        """
        min_size, max_size = _size_range(height, width, min_size, max_size)
        if count < 0 or max_shapes < 1:
            raise ValueError(f"Need count >= 0 and max_shapes >= 1, got {count}, {max_shapes}")
        for name, class_id in SHAPE_CLASS_IDS.items():
            self.add_class(SOURCE, class_id, name)
        for i in range(count):
            rng = np.random.default_rng((seed, i))
            bg_color, shapes = random_image(rng, height, width, max_shapes, min_size, max_size)
            self.add_image(
                SOURCE,
                image_id=i,
                path=None,
                height=height,
                width=width,
                bg_color=bg_color,
                shapes=shapes,
                seed=seed,
            )

    def image_reference(self, image_id: int) -> str:
        """Returns how to regenerate the image: its seed and index."""
        info = self.image_info[image_id]
        return f"shapes seed={info['seed']} index={info['id']}"

    def load_image(self, image_id: int) -> np.ndarray:
        """Draws the image: RGB uint8 [H, W, 3]."""
        info = self.image_info[image_id]
        masks = draw_masks(info["shapes"], info["height"], info["width"])
        image = np.empty([info["height"], info["width"], 3], dtype=np.uint8)
        image[:] = info["bg_color"]
        # Painting the drawn masks in order makes later shapes cover earlier ones.
        for i, (_, color, _) in enumerate(info["shapes"]):
            image[masks[..., i]] = color
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Visible part of each shape.

        Returns:
            masks: bool [H, W, N]; a fully hidden shape is left out.
            class_ids: int32 [N].
        """
        info = self.image_info[image_id]
        masks = visible_masks(draw_masks(info["shapes"], info["height"], info["width"]))
        keep = masks.any(axis=(0, 1))
        class_ids = [
            self.map_source_class_id(f"{SOURCE}.{SHAPE_CLASS_IDS[name]}")
            for name, _, _ in info["shapes"]
        ]
        return masks[..., keep], np.array(class_ids, dtype=np.int32)[keep]


def _size_range(
    height: int, width: int, min_size: int | None, max_size: int | None
) -> tuple[int, int]:
    """Resolves and checks the half-size range for an image size."""
    scale = min(height, width) / 128
    min_size = max(1, round(10 * scale)) if min_size is None else min_size
    max_size = max(min_size, round(30 * scale)) if max_size is None else max_size
    if not 1 <= min_size <= max_size:
        raise ValueError(f"Need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    # The widest shape (a triangle) must fit inside the image.
    if 2 * _margin(max_size) >= min(height, width):
        raise ValueError(
            f"Shapes of half-size {max_size} do not fit a {height}x{width} image; "
            "lower max_size or enlarge the image"
        )
    return min_size, max_size


def _margin(size: int) -> int:
    """Distance a shape of half-size `size` may reach from its centre."""
    return math.ceil(size * _TRIANGLE_SPREAD)


def random_shape(
    rng: np.random.Generator,
    height: int,
    width: int,
    min_size: int,
    max_size: int,
    bg_color: tuple[int, int, int],
) -> ShapeSpec:
    """Draws one shape spec: (name, (r, g, b), (x, y, s)), fully inside the image."""
    name = str(rng.choice(list(SHAPE_CLASS_IDS)))
    # Each channel differs from the background by 64..191 (mod 256), so shapes stay visible.
    offsets = rng.integers(64, 192, 3)
    color = tuple(int(c) for c in (np.asarray(bg_color) + offsets) % 256)
    size = int(rng.integers(min_size, max_size + 1))
    margin = _margin(size)
    y = int(rng.integers(margin, height - margin))
    x = int(rng.integers(margin, width - margin))
    return name, color, (x, y, size)


def random_image(
    rng: np.random.Generator, height: int, width: int, max_shapes: int, min_size: int, max_size: int
) -> tuple[tuple[int, int, int], list[ShapeSpec]]:
    """Draws a background colour and 1..max_shapes shapes that do not overlap much.

    Returns:
        bg_color: (r, g, b).
        shapes: specs in drawing order.
    """
    bg_color = tuple(int(c) for c in rng.integers(0, 256, 3))
    shapes: list[ShapeSpec] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        shape = random_shape(rng, height, width, min_size, max_size, bg_color)
        if shapes and compute_overlaps(_box(shape[2]), _boxes(shapes)).max() > _MAX_BOX_IOU:
            continue
        shapes.append(shape)
    return bg_color, shapes


def _box(dims: tuple[int, int, int]) -> np.ndarray:
    """Square box [1, (y1, x1, y2, x2)] of half-size s around (x, y), as matterport's."""
    x, y, s = dims
    return np.array([[y - s, x - s, y + s, x + s]])


def _boxes(shapes: list[ShapeSpec]) -> np.ndarray:
    """Boxes [N, (y1, x1, y2, x2)] of shape specs."""
    return np.concatenate([_box(dims) for _, _, dims in shapes])


def draw_masks(shapes: list[ShapeSpec], height: int, width: int) -> np.ndarray:
    """Full (unoccluded) mask of each shape: bool [H, W, N]."""
    masks = np.zeros([height, width, len(shapes)], dtype=bool)
    for i, (name, _, dims) in enumerate(shapes):
        canvas = Image.new("1", (width, height), 0)
        _draw_shape(ImageDraw.Draw(canvas), name, dims)
        masks[..., i] = np.asarray(canvas, dtype=bool)
    return masks


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, dims: tuple[int, int, int]) -> None:
    """Fills one shape with value 1."""
    x, y, s = dims
    if name == "square":
        draw.rectangle([x - s, y - s, x + s, y + s], fill=1)
    elif name == "circle":
        draw.ellipse([x - s, y - s, x + s, y + s], fill=1)
    elif name == "triangle":
        half_base = s * _TRIANGLE_SPREAD
        draw.polygon([(x, y - s), (x - half_base, y + s), (x + half_base, y + s)], fill=1)
    else:
        raise ValueError(f"Unknown shape {name!r}; expected one of {list(SHAPE_CLASS_IDS)}")


def visible_masks(masks: np.ndarray) -> np.ndarray:
    """Removes from each mask [H, W, N] the pixels covered by later (upper) masks."""
    visible = masks.copy()
    covered = np.zeros(masks.shape[:2], dtype=bool)
    for i in reversed(range(masks.shape[2])):
        visible[..., i] &= ~covered
        covered |= masks[..., i]
    return visible
