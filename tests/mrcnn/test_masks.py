import numpy as np
import pytest

from mrcnn import masks
from mrcnn.boxes import extract_bboxes


def _disk_and_rectangle(shape=(64, 80)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disk = (yy - 20) ** 2 + (xx - 30) ** 2 <= 15**2
    rectangle = np.zeros(shape, bool)
    rectangle[40:61, 5:70] = True
    return np.stack([disk, rectangle], axis=-1)


def test_mini_mask_round_trip():
    mask = _disk_and_rectangle()
    bbox = extract_bboxes(mask)
    mini = masks.minimize_mask(bbox, mask, (28, 28))
    assert mini.shape == (28, 28, 2) and mini.dtype == bool
    assert mini[:, :, 1].all()  # the rectangle fills its box
    restored = masks.expand_mask(bbox, mini, mask.shape)
    assert restored.shape == mask.shape and restored.dtype == bool
    np.testing.assert_array_equal(restored[:, :, 1], mask[:, :, 1])
    iou = masks.compute_overlaps_masks(restored[:, :, :1], mask[:, :, :1])[0, 0]
    assert iou > 0.95


def test_minimize_mask_rejects_empty_box():
    with pytest.raises(ValueError, match="instance 0 has a box of zero area"):
        masks.minimize_mask(np.array([[3, 3, 3, 8]]), np.ones((10, 10, 1), bool), (28, 28))
    with pytest.raises(ValueError, match="bbox must have shape"):
        masks.minimize_mask(np.zeros((2, 4), int), np.ones((10, 10, 1), bool), (28, 28))


def test_compute_overlaps_masks_hand_worked_and_empty():
    a = np.zeros((4, 4, 2), bool)
    a[0, :4, 0] = True  # 4 pixels
    a[3, 3, 1] = True
    b = np.zeros((4, 4, 1), bool)
    b[0, 2:4, 0] = True  # 2 pixels, both inside a[..., 0]
    b[1, 0, 0] = True  # one outside
    np.testing.assert_allclose(masks.compute_overlaps_masks(a, b), [[2 / 5], [0.0]])
    assert masks.compute_overlaps_masks(a, np.zeros((4, 4, 0), bool)).shape == (2, 0)
    assert masks.compute_overlaps_masks(np.zeros((4, 4, 0), bool), b).shape == (0, 1)


def test_compute_overlaps_masks_equals_the_dense_product_on_crowded_masks():
    """Box-pruned IoU (only pairs whose boxes meet) against pixels × N1 × N2 products, on 150
    touching and overlapping discs, empty masks and float masks thresholded at 0.5."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:120, :160]
    centres = rng.integers(0, [120, 160], (150, 2))
    radii = rng.integers(2, 14, 150)
    discs = np.stack(
        [(yy - cy) ** 2 + (xx - cx) ** 2 < r * r for (cy, cx), r in zip(centres, radii)], axis=-1
    )
    first = discs[..., :100].astype(np.float32) * rng.uniform(0.3, 1.0, 100)
    second = np.concatenate(
        [np.roll(discs[..., 50:], 3, axis=1), np.zeros((120, 160, 2), bool)], axis=-1
    )
    flat1 = (first.reshape(-1, 100) > 0.5).astype(np.float64)
    flat2 = second.reshape(-1, second.shape[-1]).astype(np.float64)
    inter = flat1.T @ flat2
    union = flat1.sum(0)[:, None] + flat2.sum(0)[None, :] - inter
    dense = np.where(union > 0, inter / np.maximum(union, 1), 0)
    got = masks.compute_overlaps_masks(first, second)
    assert got.dtype == np.float32 and (dense > 0).sum() > 100
    np.testing.assert_allclose(got, dense, atol=1e-6)


def test_unmold_mask_hand_worked():
    # Width 2 -> 4: pixel centres read source x = -0.25, 0.25, 0.75, 1.25 with zeros beyond
    # the edge, giving 0, 0.25, 0.75, 0.75 for the row [0, 1].
    small = np.array([[0.0, 1.0], [0.0, 1.0]])
    full = masks.unmold_mask(small, (0, 0, 2, 4), (3, 5, 3))
    expected = np.zeros((3, 5), bool)
    expected[0:2, 2:4] = True
    np.testing.assert_array_equal(full, expected)


def _random_instances(rng, n, height, width, max_side):
    y1 = rng.integers(0, height - 2, n)
    x1 = rng.integers(0, width - 2, n)
    y2 = np.minimum(y1 + rng.integers(1, max_side, n), height)
    x2 = np.minimum(x1 + rng.integers(1, max_side, n), width)
    small = rng.random((n, 28, 28)).astype(np.float32)
    return small, np.stack([y1, x1, y2, x2], axis=1)


def test_paste_masks_agrees_with_unmold_mask():
    rng = np.random.default_rng(0)
    small, boxes = _random_instances(rng, 40, 90, 120, 80)
    small[:3] = 0.6 + 0.4 * small[:3]  # every value above threshold: the whole box is set
    pasted = masks.paste_masks(small, boxes, (90, 120, 3))
    looped = np.stack([masks.unmold_mask(m, b, (90, 120)) for m, b in zip(small, boxes)], axis=-1)
    assert pasted.shape == (90, 120, 40) and pasted.dtype == bool
    assert np.mean(pasted == looped) >= 0.99
    np.testing.assert_array_equal(pasted[..., :3], looped[..., :3])


def test_paste_masks_cuts_boxes_at_the_image_border():
    small = np.ones((1, 28, 28), np.float32)
    pasted = masks.paste_masks(small, np.array([[-5, 10, 20, 60]]), (15, 50))
    expected = np.zeros((15, 50), bool)
    expected[0:15, 10:50] = True
    np.testing.assert_array_equal(pasted[..., 0], expected)


def test_paste_masks_no_instances_and_bad_input():
    assert masks.paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), (30, 40)).shape == (30, 40, 0)
    with pytest.raises(ValueError, match="masks must be"):
        masks.paste_masks(np.zeros((2, 28, 28)), np.zeros((3, 4)), (30, 40))
    with pytest.raises(ValueError, match="threshold"):
        masks.paste_masks(np.zeros((1, 28, 28)), np.zeros((1, 4)), (30, 40), threshold=0)


def test_paste_100_masks_at_1024_stays_inside_boxes():
    # Speed is measured in benchmarks/, not asserted here.
    rng = np.random.default_rng(1)
    small, boxes = _random_instances(rng, 100, 1024, 1024, 300)
    pasted = masks.paste_masks(small, boxes, (1024, 1024))
    assert pasted.shape == (1024, 1024, 100)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        outside = pasted[:, :, i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def _resize_each_instance(bbox, mask, mini_shape):
    """The reference: one scikit-image resize per instance, rounded (matterport's loop)."""
    from mrcnn.transform import resize

    mini = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(bbox):
        crop = mask[y1:y2, x1:x2, i].astype(bool).astype(np.float32)
        mini[:, :, i] = np.around(resize(crop, mini_shape)) > 0
    return mini


def _dense_instances(rng, count=220, shape=(256, 256)):
    """`count` ellipses of 1-80 px and axis-aligned rectangles, some cut by the border."""
    mask = np.zeros((*shape, count), dtype=bool)
    for i in range(count):
        cy, cx = rng.uniform(-10, shape[0] + 10), rng.uniform(-10, shape[1] + 10)
        ry, rx = rng.uniform(0.5, 40, 2)
        if rng.random() < 0.2:
            y, x = int(np.clip(cy, 0, shape[0] - 1)), int(np.clip(cx, 0, shape[1] - 1))
            mask[y : y + int(2 * ry) + 1, x : x + int(2 * rx) + 1, i] = True
            continue
        top, left = max(int(cy - ry), 0), max(int(cx - rx), 0)
        yy, xx = np.mgrid[top : int(cy + ry) + 2, left : int(cx + rx) + 2]
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        window = mask[top : top + inside.shape[0], left : left + inside.shape[1], i]
        window[...] = inside[: window.shape[0], : window.shape[1]]
    return mask[:, :, mask.any(axis=(0, 1))]


@pytest.fixture(scope="module")
def dense_mask():
    mask = _dense_instances(np.random.default_rng(7))
    assert mask.shape[-1] >= 200
    return mask


@pytest.mark.parametrize("mini_shape", [(56, 56), (28, 40)])
def test_minimize_mask_equals_a_resize_per_instance_on_a_dense_image(dense_mask, mini_shape):
    mask = dense_mask
    bbox = extract_bboxes(mask)
    expected = _resize_each_instance(bbox, mask, mini_shape)
    # Same bits for every memory layout and for 0/255 masks as load_mask may return them.
    for variant in (mask, np.asfortranarray(mask), mask.astype(np.uint8) * 255):
        mini = masks.minimize_mask(bbox, variant, mini_shape)
        assert mini.shape == (*mini_shape, mask.shape[-1]) and mini.dtype == bool
        np.testing.assert_array_equal(mini, expected)
    areas = (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1])
    rectangles = np.flatnonzero(mask.sum(axis=(0, 1)) == areas)
    assert rectangles.size and expected[:, :, rectangles].all()  # box-filling: every pixel kept


def test_minimize_mask_of_no_instances():
    mini = masks.minimize_mask(np.zeros((0, 4), int), np.zeros((32, 32, 0), bool), (56, 56))
    assert mini.shape == (56, 56, 0) and mini.dtype == bool
