"""Keras layers and sub-graphs of Mask R-CNN (TensorFlow ops live here and only here)."""
