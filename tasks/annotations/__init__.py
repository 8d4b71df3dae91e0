"""Readers that turn annotation files (labelme, the legacy TF 1.15 repository's folders, VIA,
COCO, CVAT, Label Studio, YOLO, mask folders, label images) into records, and the writer of
the canonical COCO-RLE dataset. Pure functions: no Prefect, no fsspec; file access is injected
as a ``fetch(relative_path) -> bytes`` callable. ``registry.FORMATS`` lists the formats."""
