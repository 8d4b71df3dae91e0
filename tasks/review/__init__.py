"""Choosing production images for an annotator: strategies, the budget, the review folder."""

# The strategies, in the order they take turns by default (see ``tasks.review.strategies``).
STRATEGIES = ("low-confidence", "class-margin", "area-outlier", "disagreement", "random")
# The review folder's manifest, beside the labelme files it explains (tasks.review.manifest).
MANIFEST_NAME = "review.json"
