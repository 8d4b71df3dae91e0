"""Draw instances on images: translucent masks, outlines, boxes, captions and a legend.

PIL + numpy only (no matplotlib, no GUI), so it runs in workers and writes straight to
files or bytes for object stores. The model code never imports this module.

Shapes: N instances; `boxes` [N, (y1, x1, y2, x2)] in pixels with y2/x2 exclusive;
`masks` [H, W, N] bool; `class_ids` [N]; images RGB uint8 [H, W, 3].
"""

from __future__ import annotations

import colorsys
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]

_GOLDEN_RATIO = 0.618033988749895
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
_LEGEND_OPACITY = 170  # of 255: dark enough for white text over any image


def _bright(hue: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


def random_colors(n: int, seed: int = 0) -> list[Color]:
    """Returns `n` bright colours with evenly spaced hues, in an order fixed by `seed`.

    Args:
        n: Number of colours.
        seed: Seed of the shuffle, so the same call always gives the same colours.

    Returns:
        A list of `n` (r, g, b) tuples in 0..255.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return [_bright(i / n) for i in order]


def class_color(class_id: int) -> Color:
    """Returns a bright colour that depends only on `class_id`.

    Hues step by the golden ratio, so consecutive ids get far-apart colours and a class
    keeps its colour across images and runs.
    """
    return _bright((int(class_id) * _GOLDEN_RATIO) % 1.0)


def draw_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray,
    class_ids: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
    *,
    show_masks: bool = True,
    show_boxes: bool = True,
    show_outlines: bool = True,
    show_captions: bool = True,
    text_lines: Sequence[str] = (),
    alpha: float = 0.45,
) -> np.ndarray:
    """Draws instances, coloured by class, on a copy of `image`.

    Args:
        image: [H, W, 3] uint8 RGB.
        boxes: [N, (y1, x1, y2, x2)] pixels, y2/x2 exclusive.
        masks: [H, W, N] bool.
        class_ids: [N] int indices into `class_names`.
        class_names: Names by class id (index 0 is the background).
        scores: Optional [N] confidences, shown as "name 0.93".
        show_masks: Blend each mask's colour into its pixels.
        show_boxes: Draw each box's rectangle.
        show_outlines: Draw each mask's inner boundary in full colour.
        show_captions: Write "name score" at each box's top-left corner.
        text_lines: Lines for a legend at the top-left (e.g. per-class area %).
        alpha: Opacity of the mask colour, in [0, 1].

    Returns:
        [H, W, 3] uint8, a new array; `image` is not modified.
    """
    n = _check_instances(image, boxes, masks, class_ids, class_names, scores)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = image.copy()
    colors = [class_color(c) for c in class_ids]
    width = _line_width(image.shape)
    for i in range(n):
        region = _mask_region(masks[..., i])
        if region is None:
            continue
        mask, view = masks[..., i][region].astype(bool), out[region]  # view writes into `out`
        if show_masks:
            blended = (1.0 - alpha) * view[mask] + alpha * np.asarray(colors[i], np.float64)
            view[mask] = np.round(blended).astype(np.uint8)
        if show_outlines:
            view[_outline(mask, width)] = colors[i]
    if not text_lines and not (n and (show_boxes or show_captions)):
        return out
    canvas = Image.fromarray(out)
    font = ImageFont.load_default(size=_font_size(image.shape))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        y1, x1, y2, x2 = (int(v) for v in boxes[i])
        if show_boxes:
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colors[i], width=width)
        if show_captions:
            label = class_names[class_ids[i]]
            if scores is not None:
                label = f"{label} {float(scores[i]):.2f}"
            _caption(draw, font, (x1, y1), label, colors[i], canvas.width)
    if text_lines:
        canvas = _legend(canvas, font, text_lines)
    return np.asarray(canvas).copy()


def _check_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray,
    class_ids: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None,
) -> int:
    """Validates shapes and class ids; returns N."""
    _check_image(image)
    n = len(class_ids)
    h, w = image.shape[:2]
    if np.shape(boxes) != (n, 4):
        raise ValueError(f"boxes must be [N, 4] with N={n} class ids, got {np.shape(boxes)}")
    if np.shape(masks) != (h, w, n):
        raise ValueError(f"masks must be [H, W, N] = {(h, w, n)}, got {np.shape(masks)}")
    if scores is not None and np.shape(scores) != (n,):
        raise ValueError(f"scores must be [N] = ({n},), got {np.shape(scores)}")
    bad = [int(c) for c in class_ids if not 0 <= c < len(class_names)]
    if bad:
        raise ValueError(f"class ids {bad} have no name (len(class_names) = {len(class_names)})")
    return n


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = getattr(image, "dtype", type(image))
        raise TypeError(f"image must be a uint8 numpy array, got {got}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB, got shape {image.shape}")


def _line_width(shape: tuple[int, ...]) -> int:
    return max(1, round(min(shape[:2]) / 256))


def _font_size(shape: tuple[int, ...]) -> int:
    # 10 px stays legible on 128-pixel images; large images get proportionally larger text
    return max(10, round(max(shape[:2]) / 40))


def _mask_region(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The mask's bounding rows and columns (None when empty).

    Drawing inside this window gives the same pixels as drawing on the whole image, at a
    fraction of the cost: mask pixels on the window's border are on the mask's edge anyway.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask pixels within `width` (4-neighbour) steps of its edge or the image edge."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1], :] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return mask & ~inner


def _caption(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont,
    corner: tuple[int, int],
    label: str,
    color: Color,
    image_width: int,
) -> None:
    """Writes `label` on a `color` tag above the box corner, or inside it at the top edge.

    The ink is black or white, whichever contrasts with the tag's luminance.
    """
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = max(1, font.size // 6)
    tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
    x, y = corner
    x = max(0, min(x, image_width - tag_w))
    y = y - tag_h if y >= tag_h else y
    draw.rectangle((x, y, x + tag_w - 1, y + tag_h - 1), fill=color)
    r, g, b = color
    ink = (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)
    draw.text((x + pad - left, y + pad - top), label, fill=ink, font=font)


def _legend(canvas: Image.Image, font: ImageFont.FreeTypeFont, lines: Sequence[str]) -> Image.Image:
    """Writes `lines` in white on a translucent dark box at the top-left corner."""
    pad = max(2, font.size // 3)
    step = round(font.size * 1.25)
    measure = ImageDraw.Draw(canvas)
    text_w = max(measure.textbbox((0, 0), line, font=font)[2] for line in lines)
    box = (
        0,
        0,
        min(text_w + 2 * pad + 1, canvas.width),
        min(step * len(lines) + 2 * pad + 1, canvas.height),
    )
    # Darken only the legend's corner (compositing the whole image costs more than the drawing).
    corner = canvas.crop(box).convert("RGBA")
    shade = Image.new("RGBA", corner.size, (0, 0, 0, _LEGEND_OPACITY))
    canvas.paste(Image.alpha_composite(corner, shade).convert("RGB"), box[:2])
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((pad, pad + row * step), line, fill=(255, 255, 255), font=font)
    return canvas


def encode_image(image: np.ndarray, format: str = "JPEG", quality: int = 90) -> bytes:
    """Encodes an RGB image as JPEG or PNG bytes (e.g. to put in an object store).

    Args:
        image: [H, W, 3] uint8 RGB.
        format: "JPEG" (or "JPG") or "PNG", any case.
        quality: JPEG quality, 1..95; ignored for PNG.

    Returns:
        The encoded file's bytes.
    """
    _check_image(image)
    fmt = {"JPG": "JPEG"}.get(format.upper(), format.upper())
    if fmt not in ("JPEG", "PNG"):
        raise ValueError(f"format must be 'JPEG' or 'PNG', got {format!r}")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt == "JPEG" else {}
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an RGB image as JPEG (.jpg/.jpeg) or PNG (.png), creating parent folders.

    Args:
        image: [H, W, 3] uint8 RGB.
        path: Destination; its suffix picks the format.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image suffix; use one of {sorted(_FORMATS)}")
    data = encode_image(image, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def display_instances(
    image: np.ndarray,
    boxes: np.ndarray,
    masks: np.ndarray,
    class_ids: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
    title: str = "",
    path: str | os.PathLike | None = None,
    show_mask: bool = True,
    show_bbox: bool = True,
    **kwargs,
) -> np.ndarray:
    """matterport's `display_instances`, rendered to an array instead of a figure.

    Args:
        image, boxes, masks, class_ids, class_names, scores: As for `draw_instances`.
        title: Written as the legend's first line when not empty.
        path: When given, the drawing is also saved there (see `save_image`).
        show_mask, show_bbox: matterport's names for `show_masks` / `show_boxes`.
        **kwargs: Other `draw_instances` keywords (`text_lines`, `alpha`, ...).

    Returns:
        [H, W, 3] uint8, the drawing.
    """
    lines = ([title] if title else []) + list(kwargs.pop("text_lines", ()))
    drawn = draw_instances(
        image,
        boxes,
        masks,
        class_ids,
        class_names,
        scores,
        show_masks=show_mask,
        show_boxes=show_bbox,
        text_lines=lines,
        **kwargs,
    )
    if path is not None:
        save_image(drawn, path)
    return drawn
