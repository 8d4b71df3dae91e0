"""Coverage statistics on hand-made per-image values whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrcnn.coverage import (
    Bootstrap,
    compare,
    count_error,
    coverage_error,
    mean_interval,
    resample_indices,
)

TRUTH = np.array([10.0, 20.0, 0.0, 35.0, 5.0])


def test_bias_is_signed_and_mae_is_not():
    over = coverage_error(TRUTH + 2.0, TRUTH)
    under = coverage_error(TRUTH - 3.0, TRUTH)
    assert (over.bias_pp, over.mae_pp) == pytest.approx((2.0, 2.0))
    assert (under.bias_pp, under.mae_pp) == pytest.approx((-3.0, 3.0))
    mixed = coverage_error(TRUTH + np.array([4.0, -4.0, 1.0, -1.0, 0.0]), TRUTH)
    assert (mixed.bias_pp, mixed.mae_pp) == pytest.approx((0.0, 2.0))
    assert mixed.images == 5


def test_a_constant_error_has_a_point_interval():
    error = coverage_error(TRUTH + 2.5, TRUTH)
    assert (error.mae_interval_pp.low, error.mae_interval_pp.high) == pytest.approx((2.5, 2.5))


def test_the_interval_holds_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(7)
    widths = []
    for images in (10, 100, 1000):
        truth = rng.uniform(0, 40, images)
        predicted = truth + rng.normal(0.5, 3.0, images)
        error = coverage_error(predicted, truth)
        interval = error.mae_interval_pp
        assert interval.low < error.mae_pp < interval.high
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2]
    # The standard error shrinks as 1 / sqrt(n): a hundred times the images, a tenth the width.
    assert widths[2] < 0.2 * widths[0]


def test_the_interval_is_seeded_and_its_resamples_depend_only_on_the_image_count():
    values = np.random.default_rng(1).uniform(0, 5, 30)
    assert mean_interval(values) == mean_interval(values.copy())
    assert mean_interval(values, Bootstrap(seed=1)) != mean_interval(values)
    indices = np.vstack(list(resample_indices(30)))
    assert indices.shape == (2000, 30) and indices.min() >= 0 and indices.max() == 29
    assert np.array_equal(indices, np.vstack(list(resample_indices(30))))


def test_many_images_are_resampled_in_blocks_of_bounded_size():
    blocks = list(resample_indices(3000, Bootstrap(resamples=1000)))
    assert len(blocks) > 1 and sum(len(block) for block in blocks) == 1000
    assert max(block.size for block in blocks) <= 1 << 20
    values = np.random.default_rng(4).uniform(0, 10, 3000)
    interval = mean_interval(values, Bootstrap(resamples=1000))
    assert interval.low < values.mean() < interval.high


def test_a_wider_confidence_gives_a_wider_interval():
    values = np.random.default_rng(2).uniform(0, 5, 40)
    narrow, wide = mean_interval(values, Bootstrap(confidence=0.5)), mean_interval(values)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_count_error_by_hand():
    counted = count_error(np.array([3, 0, 5, 2]), np.array([2, 0, 10, 4]))
    # |errors| 1, 0, 5, 2 -> mean 2; relative over present classes: 1/2, 5/10, 2/4 -> 0.5.
    assert (counted.mean_absolute, counted.median_relative) == pytest.approx((2.0, 0.5))
    assert (counted.images, counted.images_with_instances) == (4, 3)
    absent = count_error(np.array([1, 0]), np.array([0, 0]))
    assert absent.median_relative is None and absent.mean_absolute == 0.5


def test_compare_says_who_is_closer_image_by_image():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 30, 50)
    close, far = truth + rng.normal(0, 0.5, 50), truth + rng.normal(0, 5.0, 50)
    better = compare(close, far, truth)
    assert better.verdict == "model better" and better.interval_pp.high < 0
    assert better.difference_pp == pytest.approx(
        np.abs(close - truth).mean() - np.abs(far - truth).mean()
    )
    assert compare(far, close, truth).verdict == "baseline better"
    same = compare(close, close.copy(), truth)
    assert same.verdict == "no clear difference" and same.difference_pp == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same images: 3 vs 2"):
        coverage_error(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="at least one"):
        coverage_error(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="one value per image"):
        count_error(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="confidence in \\(0, 1\\)"):
        Bootstrap(confidence=95)


def test_the_documented_example_says_what_its_comments_say(capsys: pytest.CaptureFixture):
    page = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "accuracy.md"
    blocks = [part.split("```", 1)[0] for part in page.read_text().split("```python\n")[1:]]
    (example,) = [block for block in blocks if "coverage_error(" in block]
    namespace: dict = {}
    exec(example, namespace)
    error = namespace["error"]
    assert round(error.mae_pp, 2) == 0.78 and round(error.bias_pp, 2) == -0.33
    interval = error.mae_interval_pp
    assert (round(interval.low, 2), round(interval.high, 2)) == (0.45, 1.10)
    assert capsys.readouterr().out == "model better\n"
