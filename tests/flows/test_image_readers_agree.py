"""One image, one array: the converter, training's `CocoDataset.load_image` and the nightly
decoder read a file identically, with either normalisation; batch inference reads with the
model's own; the real nuclei read as before."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from mrcnn.dataset import CocoDataset, Dataset
from mrcnn.images import read_image
from mrcnn.intensity import Normalization, to_rgb_uint8
from tasks.annotations.images import image_size
from tasks.annotations.pixels import decode_pixels
from tasks.inference.image_decoding import decode_image
from tests.flows.test_batch_inference import rows
from tests.mrcnn.test_intensity import twelve_bit_nuclei
from tests.support.builders import image_file, png_of, tiff_of, write
from tests.support.encoders import png_of_any
from tests.support.tiny_model import tiny_model_dir

NORMALIZATIONS = [Normalization(), Normalization("percentile", (1.0, 99.8))]


def twelve_bit_files() -> dict[str, bytes]:
    """Sample folders of 12-bit images in 16-bit files: grey PNG, planar RGB TIFF, RGBA PNG."""
    grey = twelve_bit_nuclei(seed=3, size=48)
    rgb = np.stack([twelve_bit_nuclei(seed=s, size=48) for s in (4, 5, 6)], axis=2)
    rgba = np.dstack([rgb, np.full((48, 48), 4095, np.uint16)])
    return {
        "grey/images/grey.png": png_of(grey),
        "planar/images/planar.tif": tiff_of(
            np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
        ),
        "rgba/images/rgba.png": png_of_any(rgba),
    }


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("normalization", NORMALIZATIONS, ids=lambda n: n.method)
def test_converter_training_and_nightly_read_the_same_array(tmp_path: Path, normalization):
    from flows.convert_masks import convert_masks

    files = twelve_bit_files()
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 5:30] = 255
    for name, data in files.items():
        write(tmp_path / "in" / name, data)
        write(tmp_path / "in" / name.split("/")[0] / "masks/m.png", png_of(mask))
    convert_masks(
        source=str(tmp_path / "in"),
        destination=str(tmp_path / "out"),
        format="mask-folders",
        val_fraction=0.0,
    )
    dataset = CocoDataset()
    dataset.normalization = normalization
    dataset.load_coco(str(tmp_path / "out"), "train")
    dataset.prepare()
    assert sorted(dataset.image_reference(i) for i in dataset.image_ids) == sorted(files)
    for image_id in dataset.image_ids:
        name = dataset.image_reference(image_id)
        original = files[name]
        assert (tmp_path / "out/images" / name).read_bytes() == original  # kept as it came
        training = dataset.load_image(image_id)
        nightly = decode_image(original, name, normalization=normalization)
        converter = to_rgb_uint8(decode_pixels(original, name), normalization)
        assert training.dtype == np.uint8 and training.shape == (48, 48, 3)
        assert image_size(original, name) == (48, 48)
        np.testing.assert_array_equal(training, nightly)
        np.testing.assert_array_equal(training, converter)
        if normalization.method == "scale":
            assert training.max() <= 16  # 12 bits scaled as 16: nearly black
        else:
            assert training.min() == 0 and training.max() == 255


def test_real_nuclei_read_as_pillow_read_them_before(shared_data: Path):
    """The nuclei PNGs (8-bit RGBA) with the default: Pillow's RGB conversion, pixel for pixel,
    as the readers gave before they shared `mrcnn.images`."""
    paths = sorted((shared_data / "nuclei_dsb2018/stage1_train").glob("*/images/*.png"))[::20]
    assert len(paths) >= 20
    dataset = Dataset()
    for index, path in enumerate(paths):
        dataset.add_image("nuclei", index, path)
    dataset.prepare()
    for index, path in enumerate(paths):
        with PIL.Image.open(path) as image:
            assert image.mode == "RGBA"
            before = np.asarray(PIL.ImageOps.exif_transpose(image).convert("RGB"))
        data = path.read_bytes()
        np.testing.assert_array_equal(dataset.load_image(index), before)
        np.testing.assert_array_equal(decode_image(data, str(path)), before)
        np.testing.assert_array_equal(read_image(data)[..., :3], before)
        assert image_size(data, str(path)) == before.shape[:2]


def test_an_upright_copy_from_the_converter_reads_as_the_original_turned():
    """A PNG with an EXIF turn: the converter writes it upright; both read the same."""
    from tasks.annotations.images import exif_upright

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    PIL.Image.fromarray(stored).save(buffer, format="PNG", exif=exif.tobytes())
    original = buffer.getvalue()
    upright = exif_upright(original)
    assert upright is not None
    np.testing.assert_array_equal(decode_image(upright), decode_image(original))
    assert decode_image(original).shape == (40, 20, 3)


@pytest.mark.usefixtures("prefect_harness")
def test_batch_inference_reads_images_with_the_model_s_normalisation(tmp_path: Path):
    """A model trained on stretched images measures a 12-bit file as the stretched 8-bit file
    it would have been trained on; the same weights with "scale" see another image."""
    from flows.batch_inference import batch_inference

    scale_model, stretch_model = tiny_model_dir(), tmp_path / "stretch"
    shutil.copytree(scale_model, stretch_model)
    config = json.loads((scale_model / "config.json").read_text())
    config.update(INTENSITY_NORMALIZATION="percentile", NORMALIZATION_PERCENTILES=[1.0, 99.8])
    (stretch_model / "config.json").write_text(json.dumps(config))
    frame = twelve_bit_nuclei(seed=12, size=64)
    write(tmp_path / "camera/x.png", png_of(frame))
    write(tmp_path / "both/x.png", png_of(frame))
    write(
        tmp_path / "both/stretched.png", image_file(to_rgb_uint8(frame, NORMALIZATIONS[1]), "PNG")
    )
    for model, source in ((stretch_model, "camera"), (scale_model, "both")):
        batch_inference(
            input_uri=str(tmp_path / source),
            output_uri=str(tmp_path / f"{source}-out"),
            run_date="2024-05-01",
            weights=str(model / "model.weights.h5"),
            config=str(model / "config.json"),
            overlays=False,
        )

    def measured(source: str, name: str) -> list[tuple]:
        return [
            row[1:]
            for row in rows(
                tmp_path / f"{source}-out",
                "area_ratios",
                "image_uri, class_id, instance_count, pixel_count",
            )
            if row[0] == str(tmp_path / source / name)
        ]

    stretched = measured("camera", "x.png")
    assert stretched and stretched == measured("both", "stretched.png")
    assert stretched != measured("both", "x.png")
