import numpy as np
import pytest

from mrcnn import transform


def _image(h, w, value=200):
    return np.full((h, w, 3), value, np.uint8)


def test_resize_image_square_scales_up_to_min_dim():
    image, window, scale, padding, crop = transform.resize_image(
        _image(100, 200), min_dim=128, max_dim=256, mode="square"
    )
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert scale == pytest.approx(1.28)
    assert window == (64, 0, 192, 256)
    assert padding == [(64, 64), (0, 0), (0, 0)]
    assert crop is None
    # A constant picture stays constant (skimage clips to the input range), padding is zero.
    assert (image[64:192] == 200).all()
    assert (image[:64] == 0).all() and (image[192:] == 0).all()


def test_resize_image_square_caps_long_side_at_max_dim():
    image, window, scale, padding, _ = transform.resize_image(
        _image(100, 400), min_dim=128, max_dim=256, mode="square"
    )
    assert scale == pytest.approx(0.64)
    assert image.shape == (256, 256, 3)
    assert window == (96, 0, 160, 256)
    assert padding == [(96, 96), (0, 0), (0, 0)]


def test_resize_image_pad64_pads_each_side_to_multiple_of_64():
    image, window, scale, padding, _ = transform.resize_image(
        _image(100, 130), min_dim=64, mode="pad64"
    )
    assert scale == 1
    assert image.shape == (128, 192, 3)
    assert padding == [(14, 14), (31, 31), (0, 0)]
    assert window == (14, 31, 114, 161)


def test_resize_image_none_and_crop():
    original = np.random.default_rng(0).integers(0, 255, (100, 130, 3), dtype=np.uint8)
    same, window, scale, padding, crop = transform.resize_image(original, mode="none")
    assert same is original and window == (0, 0, 100, 130) and scale == 1 and crop is None

    first = transform.resize_image(original, min_dim=64, mode="crop", rng=np.random.default_rng(3))
    again = transform.resize_image(original, min_dim=64, mode="crop", rng=np.random.default_rng(3))
    image, window, scale, padding, crop = first
    y, x, h, w = crop
    assert (h, w) == (64, 64) and 0 <= y <= 36 and 0 <= x <= 66
    assert window == (0, 0, 64, 64) and scale == 1
    np.testing.assert_array_equal(image, original[y : y + 64, x : x + 64])
    assert again[4] == crop


def test_resize_image_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        transform.resize_image(_image(10, 10), mode="stretch")
    with pytest.raises(ValueError, match="multiple of 64"):
        transform.resize_image(_image(10, 10), min_dim=100, mode="pad64")
    with pytest.raises(ValueError, match="needs max_dim"):
        transform.resize_image(_image(10, 10), min_dim=64, mode="square")


def test_resize_mask_follows_the_image():
    mask = np.zeros((100, 200, 1), bool)
    mask[10:50, 20:120, 0] = True
    image, window, scale, padding, _ = transform.resize_image(
        _image(100, 200), min_dim=128, max_dim=256, mode="square"
    )
    resized = transform.resize_mask(mask, scale, padding)
    assert resized.shape == (256, 256, 1) and resized.dtype == bool
    rows = np.flatnonzero(resized[:, :, 0].any(axis=1))
    assert rows[0] == 64 + round(10 * 1.28) and not resized[:64].any()

    cropped = transform.resize_mask(mask, 1, padding, crop=(5, 15, 64, 64))
    np.testing.assert_array_equal(cropped, mask[5:69, 15:79])


def test_resize_mask_at_scale_one_is_the_nearest_neighbour_zoom_it_skips():
    import scipy.ndimage

    mask = np.random.default_rng(1).random((37, 53, 210)) < 0.3
    padding = [(3, 4), (0, 11), (0, 0)]
    zoomed = scipy.ndimage.zoom(mask, zoom=[1, 1, 1], order=0)
    np.testing.assert_array_equal(transform.resize_mask(mask, 1, padding), np.pad(zoomed, padding))
    np.testing.assert_array_equal(
        transform.resize_mask(mask, 1.0, padding, crop=(2, 5, 30, 40)), zoomed[2:32, 5:45]
    )


def test_mold_unmold_round_trip_accepts_config_object():
    class Config:
        MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    images = np.random.default_rng(0).integers(0, 255, (2, 4, 4, 3), dtype=np.uint8)
    molded = transform.mold_image(images, Config.MEAN_PIXEL)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0, 0], images[0, 0, 0] - Config.MEAN_PIXEL, rtol=1e-6)
    np.testing.assert_array_equal(transform.mold_image(images, Config()), molded)
    np.testing.assert_array_equal(transform.unmold_image(molded + 1e-3, Config()), images)


def test_image_meta_round_trip():
    meta = transform.compose_image_meta(
        7, (480, 640, 3), (1024, 1024, 3), (128, 0, 896, 1024), 1.6, [1, 1, 0, 1]
    )
    assert meta.dtype == np.float32 and meta.shape == (12 + 4,)
    parsed = transform.parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    np.testing.assert_array_equal(parsed["original_image_shape"][0], [480, 640, 3])
    np.testing.assert_array_equal(parsed["image_shape"][1], [1024, 1024, 3])
    np.testing.assert_array_equal(parsed["window"][0], [128, 0, 896, 1024])
    assert parsed["scale"][0] == pytest.approx(1.6)
    np.testing.assert_array_equal(parsed["active_class_ids"][0], [1, 1, 0, 1])
    with pytest.raises(ValueError, match="meta must have shape"):
        transform.parse_image_meta(meta)


def test_molded_pixels_are_bit_identical_to_matterports():
    """matterport: uint8 → float32, minus the float64 MEAN_PIXEL (float64), fed as float32."""
    mean = np.array([123.7, 116.8, 103.9])
    every_value = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)[None]
    matterport = (every_value.astype(np.float32) - mean).astype(np.float32)
    float32_mean = every_value.astype(np.float32) - mean.astype(np.float32)
    assert (float32_mean != matterport).any(), "the check must tell the two roundings apart"
    np.testing.assert_array_equal(transform.mold_image(every_value, mean), matterport)
