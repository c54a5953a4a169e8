"""COCO 2017 keypoints builder (mipnet_jax.data.tfds_pose) for `tfds build datasets/coco_keypoints`.

See README.md here: `tfds build` needs TensorFlow; without it, use
`python -m mipnet_jax.data.tfds_pose --dataset ...` (same builder, same output).
"""

from mipnet_jax.data import tfds_pose


class Builder(tfds_pose.CocoKeypoints):
  """COCO 2017 person keypoints: one example per image, the original file bytes."""
