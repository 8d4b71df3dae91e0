"""The model's INTENSITY_NORMALIZATION wherever an image becomes its input: `detect()` of 16-bit
arrays, an export's `mrcnn_config.json` and its detect, evaluation's samples, `train()`, and
the mean pixel `auto_config` measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrcnn.export import EXPORT_CONFIG, exported_config, load_exported
from mrcnn.images import read_image
from mrcnn.intensity import Normalization, to_rgb_uint8
from mrcnn.model import MaskRCNN
from tasks.evaluation import detect_samples
from tasks.training.auto_config import auto_choices
from tasks.training.config import load_training_config
from tasks.training.data import load_split
from tests.mrcnn.conftest import TinyConfig
from tests.mrcnn.test_intensity import twelve_bit_nuclei
from tests.support.builders import png_of, tiff_of, write
from tests.support.parity import assert_same_detections
from tests.support.tiny_model import distinct_class_head

STRETCH = Normalization("percentile", (0.5, 99.5))
CLASSES = ["square", "circle", "triangle"]


class StretchConfig(TinyConfig):
    """The tiny config on ResNet-18, reading images by per-image percentiles."""

    BACKBONE = "resnet18"
    INTENSITY_NORMALIZATION = "percentile"
    NORMALIZATION_PERCENTILES = (0.5, 99.5)


def sixteen_bit_images() -> list[np.ndarray]:
    """A 12-bit grey frame and a 12-bit RGB frame, in uint16."""
    rgb = np.stack([twelve_bit_nuclei(seed=s, size=64)[:, :48] for s in (7, 8, 9)], axis=2)
    return [twelve_bit_nuclei(seed=6, size=64)[:40], rgb]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> MaskRCNN:
    built = MaskRCNN("inference", StretchConfig(), tmp_path_factory.mktemp("logs"))
    distinct_class_head(built)
    return built


def write_val_split(root: Path) -> dict[str, np.ndarray]:
    """A canonical dataset of two 12-bit images (PNG and TIFF), one square each."""
    frames = {"a.png": twelve_bit_nuclei(seed=1, size=64), "b.tif": twelve_bit_nuclei(seed=2)}
    write(root / "images/a.png", png_of(frames["a.png"]))
    write(root / "images/b.tif", tiff_of(frames["b.tif"]))
    images, annotations = [], []
    for image_id, (name, frame) in enumerate(frames.items(), start=1):
        images.append(
            {"id": image_id, "file_name": name, "height": frame.shape[0], "width": frame.shape[1]}
        )
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[4, 4, 20, 4, 20, 20, 4, 20]],
                "area": 256,
                "bbox": [4, 4, 16, 16],
            }
        )
    categories = [{"id": i, "name": name} for i, name in enumerate(CLASSES, start=1)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    write(root / "annotations/val.json", json.dumps(document))
    write(root / "annotations/train.json", json.dumps(document))
    return frames


def test_detect_maps_16_bit_arrays_by_the_config(model):
    images = sixteen_bit_images()
    normalised = [to_rgb_uint8(image, STRETCH) for image in images]
    assert_same_detections(model.detect(images), model.detect(normalised))
    molded, _, _ = model.mold_inputs([images[1]])
    scaled, _, _ = model.mold_inputs([to_rgb_uint8(images[1])])
    assert not np.allclose(molded, scaled)  # the stretch, not the 1/257 scale, reached the graph


def test_an_export_stores_the_normalisation_and_detects_with_it(model, tmp_path: Path):
    path = tmp_path / "export"
    model.export(path)
    stored = json.loads((path / EXPORT_CONFIG).read_text())
    assert stored["INTENSITY_NORMALIZATION"] == "percentile"
    assert stored["NORMALIZATION_PERCENTILES"] == [0.5, 99.5]
    assert Normalization.from_config(exported_config(path)) == STRETCH
    images = sixteen_bit_images()
    assert_same_detections(load_exported(path)(images), model.detect(images))


def test_evaluation_samples_are_the_images_as_the_model_reads_them(model, tmp_path: Path):
    frames = write_val_split(tmp_path)
    val_set = load_split(str(tmp_path), "val", CLASSES, model.config)
    samples = list(detect_samples(model, val_set))
    assert len(samples) == 2
    for sample, (name, frame) in zip(samples, frames.items()):
        expected = to_rgb_uint8(read_image(tmp_path / "images" / name), STRETCH)
        np.testing.assert_array_equal(sample.image, expected)  # what Otsu thresholds
        assert sample.image.max() == 255 and to_rgb_uint8(frame).max() <= 16


def test_train_reads_images_with_the_config_s_normalisation(tmp_path: Path):
    write_val_split(tmp_path / "data")
    dataset = load_split(str(tmp_path / "data"), "train", CLASSES, TinyConfig())
    assert dataset.normalization == Normalization()
    trainer = MaskRCNN("training", StretchConfig(IMAGES_PER_GPU=1), tmp_path / "logs")
    trainer.train(dataset, None, 1e-4, epochs=1, layers="heads", verbose=0)
    assert dataset.normalization == STRETCH
    assert dataset.load_image(0).max() == 255


def test_auto_config_measures_the_mean_pixel_of_the_images_as_training_reads_them(tmp_path: Path):
    frames = write_val_split(tmp_path)
    default = Normalization("percentile")  # the config sets no NORMALIZATION_PERCENTILES
    expected = np.mean(
        [to_rgb_uint8(frame, default).reshape(-1, 3).mean(axis=0) for frame in frames.values()],
        axis=0,
    )
    chosen = {}
    for setting in ("percentile", "scale"):
        training = load_training_config(
            {
                "name": "n",
                "classes": CLASSES,
                "epochs": 1,
                "auto_config": True,
                "config": {"INTENSITY_NORMALIZATION": setting},
            }
        )
        chosen[setting] = next(
            c.value for c in auto_choices(training, str(tmp_path)) if c.key == "MEAN_PIXEL"
        )
    np.testing.assert_allclose(chosen["percentile"], expected, atol=0.05)
    assert max(chosen["scale"]) < 16  # the 12-bit frames scaled by 1/257
