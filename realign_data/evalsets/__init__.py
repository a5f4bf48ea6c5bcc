"""Evaluation sets: POPE built from COCO annotations, and the overlap check between training images and an evaluation set."""
