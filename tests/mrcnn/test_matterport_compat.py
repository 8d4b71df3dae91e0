"""A matterport-style user script runs unchanged against `mrcnn` (same imports and calls)."""

import numpy as np

import mrcnn.model as modellib
from mrcnn import utils, visualize
from mrcnn.config import Config


class BalloonLikeConfig(Config):
    NAME = "balloon"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 1
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_INFERENCE = 32
    DETECTION_MAX_INSTANCES = 5
    DETECTION_MIN_CONFIDENCE = 0.0
    SEED = 0


class BalloonLikeDataset(utils.Dataset):
    """Written the way matterport's samples subclass `utils.Dataset`."""

    def load_balloons(self, count):
        self.add_class("balloon", 1, "balloon")
        for i in range(count):
            self.add_image(
                "balloon", image_id=i, path=None, width=80, height=60, center=(20 + 10 * i, 30)
            )

    def load_image(self, image_id):
        info = self.image_info[image_id]
        return np.full((info["height"], info["width"], 3), 90 + 20 * image_id, np.uint8)

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        yy, xx = np.mgrid[: info["height"], : info["width"]]
        cy, cx = info["center"]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < 12**2)[..., None]
        return mask, np.ones([mask.shape[-1]], dtype=np.int32)


def test_matterport_style_inference_script(tmp_path):
    dataset = BalloonLikeDataset()
    dataset.load_balloons(2)
    dataset.prepare()
    assert dataset.class_names == ["BG", "balloon"]

    config = BalloonLikeConfig()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path))
    image_id = dataset.image_ids[1]
    image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
        dataset, config, image_id, use_mini_mask=False
    )
    assert gt_mask.shape == (64, 64, 1) and gt_bbox.shape == (1, 4)
    assert list(gt_class_id) == [1]

    r = model.detect([image], verbose=0)[0]
    assert set(r) == {"rois", "class_ids", "scores", "masks"}
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_bbox, gt_class_id, gt_mask, r["rois"], r["class_ids"], r["scores"], r["masks"]
    )
    assert 0.0 <= ap <= 1.0
    picture = visualize.display_instances(
        image,
        r["rois"],
        r["masks"],
        r["class_ids"],
        dataset.class_names,
        r["scores"],
        path=tmp_path / "out.png",
    )
    assert picture.shape == image.shape and (tmp_path / "out.png").is_file()
    molded = modellib.mold_image(image.astype(np.float32), config)
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - config.MEAN_PIXEL)
