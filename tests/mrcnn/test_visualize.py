"""Tests for mrcnn.visualize: pixels drawn where expected, nothing elsewhere."""

import io

import numpy as np
import pytest
from PIL import Image

from mrcnn import visualize as viz

NAMES = ["BG", "cat", "dog"]


def _scene(n: int = 1):
    image = np.full((64, 80, 3), 100, np.uint8)
    masks = np.zeros((64, 80, n), bool)
    boxes = np.zeros((n, 4), np.int32)
    if n:
        masks[24:32, 10:20, 0] = True
        boxes[0] = (24, 10, 32, 20)
    return image, boxes, masks, np.ones(n, np.int32)


def test_colors_are_deterministic_bright_and_distinct():
    colors = viz.random_colors(5, seed=3)
    assert colors == viz.random_colors(5, seed=3)
    assert len(set(colors)) == 5 and all(max(c) == 255 for c in colors)
    assert viz.class_color(7) == viz.class_color(7) != viz.class_color(8)
    assert viz.random_colors(0) == []


def test_mask_pixels_blend_and_outside_is_untouched():
    image, boxes, masks, ids = _scene()
    out = viz.draw_instances(
        image,
        boxes,
        masks,
        ids,
        NAMES,
        show_boxes=False,
        show_captions=False,
        show_outlines=False,
        alpha=0.5,
    )
    r, g, b = viz.class_color(1)
    np.testing.assert_array_equal(out[28, 15], np.round([50 + r / 2, 50 + g / 2, 50 + b / 2]))
    assert (out[masks[..., 0]] != 100).any(axis=1).all()
    np.testing.assert_array_equal(out[~masks[..., 0]], image[~masks[..., 0]])


def test_outline_is_the_mask_edge_in_full_colour():
    image, boxes, masks, ids = _scene()
    out = viz.draw_instances(
        image, boxes, masks, ids, NAMES, show_masks=False, show_boxes=False, show_captions=False
    )
    color = viz.class_color(1)
    assert tuple(out[24, 12]) == color and tuple(out[31, 19]) == color  # edge rows/columns
    assert tuple(out[28, 15]) == (100, 100, 100)  # interior left alone without mask fill


def test_outlines_match_a_morphological_reference_at_edges_holes_and_empty_masks():
    """Each instance is drawn inside its own window; the result must equal the whole-image
    definition: mask pixels within `width` 4-neighbour steps of the mask's or image's edge."""
    from skimage.morphology import diamond, erosion

    image = np.full((120, 160, 3), 100, np.uint8)
    masks = np.zeros((120, 160, 3), bool)
    masks[0:50, 0:70, 0] = True  # touches the top and left image edges
    masks[15:30, 20:40, 0] = False  # with a hole
    masks[60:120, 100:160, 2] = True  # touches the bottom and right edges; mask 1 stays empty
    out = viz.draw_instances(
        image,
        np.zeros((3, 4), np.int32),
        masks,
        np.array([1, 2, 1]),
        NAMES,
        show_masks=False,
        show_boxes=False,
        show_captions=False,
    )
    width = viz._line_width(image.shape)
    expected = np.zeros((120, 160), bool)
    for i in (0, 2):
        padded = np.pad(masks[..., i], width)  # outside the image counts as outside the mask
        for _ in range(width):
            padded = erosion(padded, diamond(1))
        expected |= masks[..., i] & ~padded[width:-width, width:-width]
    assert expected.sum() > 0 and (expected != masks.any(axis=2)).any()
    np.testing.assert_array_equal((out != 100).any(axis=2), expected)


def test_box_drawn_on_its_border_with_exclusive_corner():
    image, boxes, masks, ids = _scene()
    out = viz.draw_instances(
        image, boxes, masks, ids, NAMES, show_masks=False, show_outlines=False, show_captions=False
    )
    color = viz.class_color(1)
    for y, x in [(24, 10), (24, 19), (31, 10), (31, 19), (28, 10), (24, 14)]:
        assert tuple(out[y, x]) == color, (y, x)
    for y, x in [(28, 15), (32, 15), (28, 20), (23, 12)]:
        assert tuple(out[y, x]) == (100, 100, 100), (y, x)


def test_caption_tag_sits_above_the_box():
    image, boxes, masks, ids = _scene()
    out = viz.draw_instances(
        image,
        boxes,
        masks,
        ids,
        NAMES,
        np.array([0.93]),
        show_masks=False,
        show_outlines=False,
        show_boxes=False,
    )
    assert tuple(out[23, 10]) == viz.class_color(1)  # tag background just above (y1, x1)
    np.testing.assert_array_equal(out[32:], image[32:])


def test_no_instances_returns_an_identical_copy():
    image, boxes, masks, ids = _scene(n=0)
    out = viz.draw_instances(image, boxes, masks, ids, NAMES)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


def test_output_type_and_input_unchanged():
    image, boxes, masks, ids = _scene()
    original = image.copy()
    out = viz.draw_instances(image, boxes, masks, ids, NAMES, np.array([0.5]))
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(image, original)


def test_text_lines_darken_the_top_left_only():
    image, boxes, masks, ids = _scene(n=0)
    out = viz.draw_instances(image, boxes, masks, ids, NAMES, text_lines=["cat 12.5%", "dog 3.0%"])
    assert (out[:4, :4] < 100).all()  # translucent dark legend box
    np.testing.assert_array_equal(out[-4:, -4:], image[-4:, -4:])


def test_bad_inputs_are_named():
    image, boxes, masks, ids = _scene()
    with pytest.raises(ValueError, match="masks must be"):
        viz.draw_instances(image, boxes, masks[:, :5], ids, NAMES)
    with pytest.raises(ValueError, match=r"class ids \[5\]"):
        viz.draw_instances(image, boxes, masks, np.array([5]), NAMES)
    with pytest.raises(TypeError, match="uint8"):
        viz.draw_instances(image.astype(np.float32), boxes, masks, ids, NAMES)


def test_encode_and_save_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    png = np.asarray(Image.open(io.BytesIO(viz.encode_image(image, "png"))))
    np.testing.assert_array_equal(png, image)
    smooth = np.repeat(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None], 16, 0).repeat(3, 2)
    jpeg = np.asarray(Image.open(io.BytesIO(viz.encode_image(smooth, quality=95))))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3
    path = tmp_path / "a" / "b" / "out.png"
    viz.save_image(image, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert Image.open(_saved(tmp_path / "x.JPG", image)).format == "JPEG"
    with pytest.raises(ValueError, match="out.gif"):
        viz.save_image(image, tmp_path / "out.gif")


def _saved(path, image):
    viz.save_image(image, path)
    return path


def test_display_instances_returns_and_writes(tmp_path):
    image, boxes, masks, ids = _scene()
    path = tmp_path / "shown.png"
    out = viz.display_instances(image, boxes, masks, ids, NAMES, title="val 1", path=path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), out)
    assert (out[:3, :3] < 100).all()  # title legend
