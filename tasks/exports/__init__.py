"""Batch-inference predictions out of the Parquet tables, in the formats other tools read.

``predictions`` reads the committed tables into typed records (the newest result of each
image in a date range); ``labelme``, ``coco_results`` and ``yolo`` write them. The review
folder of ``select-for-review`` is a labelme export of the chosen images.
"""

FORMATS = ("coco-results", "yolo", "labelme")
