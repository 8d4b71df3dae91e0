"""Choosing production images for an annotator: strategies, the budget, the review folder."""
