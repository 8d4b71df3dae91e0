"""Tests for mrcnn.augment: masks follow the image, photometry leaves masks alone."""

import numpy as np
import pytest

from mrcnn.augment import Augmentation, apply_augmentation

MARK = (255, 0, 0)


def _marked(h: int, w: int, y: int, x: int):
    """A dark image with one red pixel at (y, x), and a mask holding just that pixel."""
    image = np.full((h, w, 3), 20, np.uint8)
    image[y, x] = MARK
    masks = np.zeros((h, w, 2), bool)
    masks[y, x, 0] = True
    masks[:, :, 1] = True  # a full mask stays full under flips and turns
    return image, masks


def _mark_position(image: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero((image == MARK).all(axis=-1))
    assert len(ys) == 1
    return int(ys[0]), int(xs[0])


@pytest.mark.parametrize(
    ("augmentation", "expected"),
    [
        (Augmentation(hflip=1.0), (1, 4)),
        (Augmentation(vflip=1.0), (3, 1)),
        (Augmentation(hflip=1.0, vflip=1.0), (3, 4)),
    ],
)
def test_flips_move_mask_with_image(augmentation, expected):
    image, masks = _marked(5, 6, 1, 1)
    out_image, out_masks = augmentation(image, masks, np.random.default_rng(0))
    assert _mark_position(out_image) == expected
    assert list(zip(*np.nonzero(out_masks[..., 0]))) == [expected]
    assert out_masks[..., 1].all()


def test_quarter_turns_move_mask_with_image():
    image, masks = _marked(6, 6, 1, 4)
    seen = set()
    for seed in range(12):
        out_image, out_masks = Augmentation(rot90=1.0)(image, masks, np.random.default_rng(seed))
        position = _mark_position(out_image)
        assert np.argwhere(out_masks[..., 0]).tolist() == [list(position)]
        seen.add(position)
    # counter-clockwise turns of (1, 4) in a 6x6 image by k = 1, 2, 3
    assert seen == {(1, 1), (4, 1), (4, 4)}


def test_non_square_images_turn_only_half_way():
    image, masks = _marked(4, 6, 0, 1)
    out_image, out_masks = Augmentation(rot90=1.0)(image, masks, np.random.default_rng(0))
    assert out_image.shape == (4, 6, 3) and out_masks.shape == (4, 6, 2)
    assert _mark_position(out_image) == (3, 4)


@pytest.mark.parametrize(
    ("factor", "source", "target"), [(2.0, (4, 4), (4, 4)), (0.5, (3, 5), (3, 4))]
)
def test_zoom_keeps_size_and_moves_masks(factor, source, target):
    # 8x8 zoomed x2 -> 16x16, centre crop from 4: pixel 4 covers 8..9 -> 4..5.
    # x0.5 -> 4x4 sampled at 1, 3, 5, 7, padded by 2: pixel (3, 5) -> (1, 2) -> (3, 4).
    masks = np.zeros((8, 8, 1), bool)
    masks[source] = True
    image = np.where(masks, 200, 0).astype(np.uint8).repeat(3, axis=2)
    zoom = Augmentation(scale=(factor, factor))
    out_image, out_masks = zoom(image, masks, np.random.default_rng(0))
    assert out_image.shape == (8, 8, 3) and out_masks.dtype == bool
    assert tuple(np.argwhere(out_masks[..., 0])[0]) == target
    assert out_image[target].min() > 0  # the bright pixel went where its mask went


def test_photometric_changes_image_only():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    masks = rng.random((8, 8, 3)) > 0.5
    out_image, out_masks = Augmentation(brightness=0.3, contrast=0.5)(image, masks, rng)
    assert out_image.dtype == np.uint8 and not np.array_equal(out_image, image)
    np.testing.assert_array_equal(out_masks, masks)


def test_brightness_is_an_additive_shift_clipped_to_uint8():
    image = np.array([[[0, 100, 250]]], np.uint8)
    masks = np.zeros((1, 1, 0), bool)
    augmentation = Augmentation(brightness=0.2)
    delta = np.random.default_rng(5).uniform(-0.2, 0.2) * 255
    out, _ = augmentation(image, masks, np.random.default_rng(5))
    expected = np.clip(np.round([delta, 100 + delta, 250 + delta]), 0, 255)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_same_seed_same_result():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    masks = rng.random((16, 16, 2)) > 0.5
    augmentation = Augmentation(
        hflip=0.5, vflip=0.5, rot90=0.5, scale=(0.8, 1.25), brightness=0.1, contrast=0.2
    )
    first = augmentation(image, masks, np.random.default_rng(11))
    second = augmentation(image, masks, np.random.default_rng(11))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    outputs = {augmentation(image, masks, np.random.default_rng(s))[0].tobytes() for s in range(6)}
    assert len(outputs) > 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hflip": 1.5}, ValueError, r"hflip is a probability in \[0, 1\]"),
        ({"rot90": -0.1}, ValueError, "rot90"),
        ({"scale": (0.0, 1.0)}, ValueError, "0 < min <= max"),
        ({"scale": (1.2, 0.8)}, ValueError, "0 < min <= max"),
        ({"scale": (1.0,)}, ValueError, r"scale must be \(min, max\)"),
        ({"brightness": -0.1}, ValueError, "brightness is a magnitude"),
        ({"contrast": "high"}, TypeError, "contrast must be a number"),
    ],
)
def test_validation_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Augmentation(**kwargs)


def test_dict_round_trip_and_unknown_keys():
    augmentation = Augmentation(hflip=0.5, scale=(0.9, 1.1), contrast=0.2)
    data = augmentation.to_dict()
    assert data["scale"] == [0.9, 1.1]
    assert Augmentation.from_dict(data) == augmentation
    with pytest.raises(ValueError, match=r"\['flip', 'zoom'\]"):
        Augmentation.from_dict({"hflip": 0.5, "zoom": 2, "flip": 1})


def test_bad_arrays_are_named():
    image, masks = _marked(4, 4, 0, 0)
    with pytest.raises(TypeError, match="masks must be a bool"):
        Augmentation()(image, masks.astype(np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="H, W = \\(4, 4\\)"):
        Augmentation()(image, masks[:3], np.random.default_rng(0))


def test_albumentations_style_callable():
    image, masks = _marked(5, 6, 1, 1)
    calls = []

    def flip_lr(image, masks):
        calls.append([m.dtype for m in masks])
        return {"image": image[:, ::-1], "masks": [m[:, ::-1] for m in masks], "extra": 1}

    out_image, out_masks = apply_augmentation(flip_lr, image, masks, np.random.default_rng(0))
    assert calls == [[np.uint8, np.uint8]]
    assert out_masks.dtype == bool and out_masks.shape == (5, 6, 2)
    assert _mark_position(out_image) == (1, 4) and out_masks[1, 4, 0]


def test_apply_augmentation_dispatch_and_errors():
    image, masks = _marked(4, 4, 0, 0)
    rng = np.random.default_rng(0)
    out_image, _ = apply_augmentation(Augmentation(vflip=1.0), image, masks, rng)
    assert _mark_position(out_image) == (3, 0)
    with pytest.raises(TypeError, match="got dict"):
        apply_augmentation({"hflip": 1.0}, image, masks, rng)
    with pytest.raises(TypeError, match="dict with 'image' and 'masks'"):
        apply_augmentation(lambda image, masks: image, image, masks, rng)
    with pytest.raises(ValueError, match="1 masks for 2 instances"):
        apply_augmentation(
            lambda image, masks: {"image": image, "masks": masks[:1]}, image, masks, rng
        )
