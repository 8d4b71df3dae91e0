"""Canonical datasets as a whole: merging a base with reviewed additions, and their lineage.

A canonical dataset is the folder ``convert-masks`` writes (see
``tasks.annotations.canonical``). This package works on such folders after they exist:

- ``documents``: a canonical dataset's COCO documents parsed into images and annotations
  (``DatasetContent``), and those written back as documents with fresh ids. Pure.
- ``merge``: the rules of ``merge-datasets`` (de-duplication by image content, reviewed
  annotations win, stable splits, file-name collisions, classes appended) and the merged
  dataset's ``report.json``. Pure.
- ``lineage``: ``dataset.json``, a dataset's content hash and its parents
  (``describe_dataset``). Pure.
- ``io``: the thin Prefect tasks of ``merge-datasets`` (read a dataset, hash its images,
  write the result); the only module here that touches storage.
"""
