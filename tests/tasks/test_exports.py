"""Predictions out of the tables and into labelme, COCO results and YOLO-seg, and back."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from skimage import draw

from tasks.annotations.labelme import read_labelme
from tasks.annotations.rle import decode_rle, encode_rle
from tasks.annotations.yolo import read_yolo
from tasks.exports.folder import export_documents, image_place, relative_names
from tasks.exports.predictions import read_predictions
from tests.support.results_tables import Detected, Result, write_day, write_images

CLASSES = ("circle", "square")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def masks(height: int, width: int) -> list[Detected]:
    ring = np.zeros((height, width), bool)
    ring[draw.disk((20, 24), 14, shape=ring.shape)] = True
    ring[draw.disk((20, 24), 5, shape=ring.shape)] = False  # a hole
    pair = np.zeros((height, width), bool)
    pair[5:15, 50:62] = pair[30:38, 44:60] = True  # one instance in two pieces
    return [Detected(1, 0.91, ring), Detected(2, 0.62, pair)]


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, list[Result]]:
    images = [
        Result(str(tmp_path / "in" / "a" / "one.png"), 48, 64, tuple(masks(48, 64))),
        Result(str(tmp_path / "in" / "b" / "two.jpg"), 40, 70, tuple(masks(40, 70)[1:])),
        Result(str(tmp_path / "in" / "b" / "empty.png"), 30, 30),
    ]
    write_images(images)
    write_day(tmp_path / "out", "2026-06-01", images, CLASSES)
    return tmp_path / "out", images


def write_export(fmt: str, out: Path, folder: Path) -> dict[str, Result]:
    predictions = read_predictions(str(out))
    names = relative_names([p.image_uri for p in predictions])
    for path, data in export_documents(fmt, predictions, names).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    for uri, relative in names.items():
        (folder / image_place(fmt, relative)).parent.mkdir(parents=True, exist_ok=True)
        (folder / image_place(fmt, relative)).write_bytes(Path(uri).read_bytes())
    return names


def test_predictions_are_read_with_sizes_models_and_masks(results):
    out, images = results
    predictions = read_predictions(str(out))
    assert [p.image_uri for p in predictions] == sorted(r.uri for r in images)
    by_uri = {p.image_uri: p for p in predictions}
    one = by_uri[images[0].uri]
    assert (one.height, one.width, one.model_name, one.model_version) == (48, 64, "shapes", "1")
    assert one.class_names == CLASSES and [i.class_name for i in one.instances] == list(CLASSES)
    assert one.instances[0].mask().tolist() == images[0].detections[0].mask.tolist()
    assert by_uri[images[2].uri].instances == () and by_uri[images[2].uri].area_ratios == {
        "circle": 0.0,
        "square": 0.0,
    }
    assert read_predictions(str(out), since=datetime.date(2026, 6, 2)) == []


def test_relative_names_keep_the_paths_below_the_shared_folder():
    assert relative_names(["s3://b/in/a/x.png", "s3://b/in/b/y.png"]) == {
        "s3://b/in/a/x.png": "a/x.png",
        "s3://b/in/b/y.png": "b/y.png",
    }
    assert relative_names(["/data/in/x.png"]) == {"/data/in/x.png": "x.png"}


def test_labelme_export_reads_back_with_the_same_masks(results, tmp_path: Path):
    out, images = results
    folder = tmp_path / "labelme"
    names = write_export("labelme", out, folder)
    assert names[images[0].uri] == "a/one.png"
    document = json.loads((folder / "a" / "one.json").read_text())
    assert {
        key: document[key]
        for key in ("imagePath", "imageData", "imageHeight", "imageWidth", "flags")
    } == {
        "imagePath": "one.png",
        "imageData": None,
        "imageHeight": 48,
        "imageWidth": 64,
        "flags": {},
    }
    ring_shapes = [s for s in document["shapes"] if s["label"] == "circle"]
    pair_shapes = [s for s in document["shapes"] if s["label"] == "square"]
    assert len(ring_shapes) >= 2 and len({s["group_id"] for s in ring_shapes}) == 1
    assert len(pair_shapes) == 2 and pair_shapes[0]["group_id"] != ring_shapes[0]["group_id"]
    assert ring_shapes[0]["description"] == "score 0.910"
    for image in images:
        relative = Path(names[image.uri]).with_suffix(".json").as_posix()
        read = read_labelme(
            relative, (folder / relative).read_bytes(), lambda name: (folder / name).read_bytes()
        )
        assert not read.issues
        got = read.images[0].instances
        assert [i.label for i in got] == [CLASSES[d.class_id - 1] for d in image.detections]
        for instance, detection in zip(got, image.detections):
            assert iou(instance.mask, detection.mask) >= 0.97


def test_coco_results_load_in_pycocotools_and_score_perfectly_against_the_truth(
    results, tmp_path: Path
):
    out, images = results
    folder = tmp_path / "coco"
    names = write_export("coco-results", out, folder)
    truth = COCO(str(folder / "images.json"))
    assert {image["file_name"] for image in truth.dataset["images"]} == {
        f"images/{name}" for name in names.values()
    }
    found = truth.loadRes(str(folder / "results.json"))
    assert len(found.getAnnIds()) == 3
    ids = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
    annotations = []
    for image in images:
        image_id = ids[f"images/{names[image.uri]}"]
        for detection, result in zip(image.detections, found.loadAnns(found.getAnnIds(image_id))):
            assert decode_rle(result["segmentation"]).tolist() == detection.mask.tolist()
            rle = encode_rle(detection.mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "iscrowd": 0,
                    "category_id": detection.class_id,
                    "segmentation": rle,
                    "area": int(detection.mask.sum()),
                    "bbox": result["bbox"],
                }
            )
    truth.dataset["annotations"] = annotations
    truth.createIndex()
    evaluation = COCOeval(truth, truth.loadRes(str(folder / "results.json")), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_an_unknown_format_is_named():
    with pytest.raises(ValueError, match="coco-results, yolo, labelme"):
        export_documents("voc", [], {})


def test_yolo_export_reads_back_with_the_same_class_areas(results, tmp_path: Path):
    out, images = results
    folder = tmp_path / "yolo"
    names = write_export("yolo", out, folder)
    assert read_yolo_names(folder) == list(CLASSES)
    for image in images:
        relative = "labels/" + str(Path(names[image.uri]).with_suffix(".txt"))
        read = read_yolo(
            relative, (folder / relative).read_bytes(), lambda name: (folder / name).read_bytes()
        )
        assert not read.issues and read.images[0].file_name == f"images/{names[image.uri]}"
        for class_id, name in enumerate(CLASSES, start=1):
            want = np.zeros((image.height, image.width), bool)
            for detection in image.detections:
                want |= detection.mask if detection.class_id == class_id else False
            got = np.zeros_like(want)
            for instance in read.images[0].instances:
                got |= instance.mask if instance.label == name else False
            assert iou(got, want) >= 0.97 if want.any() else not got.any()


def read_yolo_names(folder: Path) -> list[str]:
    import yaml

    names = yaml.safe_load((folder / "data.yaml").read_text())["names"]
    return [names[k] for k in sorted(names)]


EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "labelme_examples"


def test_real_labelme_masks_round_trip_through_every_export(tmp_path: Path):
    if not EXAMPLES.is_dir():
        pytest.skip("../shared/data/labelme_examples is absent (it is present on CI)")
    source = EXAMPLES / "data_annotated"
    classes = [
        line
        for line in (EXAMPLES / "labels.txt").read_text().split()
        if line not in ("__ignore__", "_background_")
    ]
    images = []
    for path in sorted(source.glob("*.json")):
        record = read_labelme(
            path.name, path.read_bytes(), lambda name: (source / name).read_bytes()
        ).images[0]
        images.append(
            Result(
                str(tmp_path / "in" / record.file_name),
                record.height,
                record.width,
                tuple(Detected(classes.index(i.label) + 1, 0.9, i.mask) for i in record.instances),
            )
        )
    write_images(images)
    write_day(tmp_path / "out", "2026-06-01", images, classes)
    checked = {"labelme": 0, "coco-results": 0, "yolo": 0}
    labelme = write_export("labelme", tmp_path / "out", tmp_path / "labelme")
    coco = write_export("coco-results", tmp_path / "out", tmp_path / "coco")
    results = json.loads((tmp_path / "coco" / "results.json").read_text())
    ids = {
        i["file_name"]: i["id"]
        for i in json.loads((tmp_path / "coco" / "images.json").read_text())["images"]
    }
    yolo = write_export("yolo", tmp_path / "out", tmp_path / "yolo")
    for image in images:
        name = Path(labelme[image.uri]).with_suffix(".json").as_posix()
        read = read_labelme(
            name,
            (tmp_path / "labelme" / name).read_bytes(),
            lambda n: (tmp_path / "labelme" / n).read_bytes(),
        ).images[0]
        for instance, detection in zip(read.instances, image.detections, strict=True):
            assert iou(instance.mask, detection.mask) >= 0.97
            checked["labelme"] += 1
        found = [r for r in results if r["image_id"] == ids[f"images/{coco[image.uri]}"]]
        for result, detection in zip(found, image.detections, strict=True):
            assert iou(decode_rle(result["segmentation"]), detection.mask) >= 0.99
            checked["coco-results"] += 1
        label = "labels/" + Path(yolo[image.uri]).with_suffix(".txt").as_posix()
        read = read_yolo(
            label,
            (tmp_path / "yolo" / label).read_bytes(),
            lambda n: (tmp_path / "yolo" / n).read_bytes(),
        ).images[0]
        for class_id in {d.class_id for d in image.detections}:
            want = np.any([d.mask for d in image.detections if d.class_id == class_id], axis=0)
            got = np.any(
                [i.mask for i in read.instances if i.label == classes[class_id - 1]], axis=0
            )
            assert iou(got, want) >= 0.97
            checked["yolo"] += 1
    assert min(checked.values()) >= 5, checked
