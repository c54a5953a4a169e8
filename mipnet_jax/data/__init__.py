"""Data: COCO-format readers, evaluation boxes, augmentation, multi-instance targets, images,
the grain pipeline, the synthetic crowd set and the TFDS (ArrayRecord) preparation."""
