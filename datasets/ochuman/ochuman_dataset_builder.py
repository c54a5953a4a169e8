"""OCHuman builder (mipnet_jax.data.tfds_pose) for `tfds build datasets/ochuman`.

See README.md here: `tfds build` needs TensorFlow; without it, use
`python -m mipnet_jax.data.tfds_pose --dataset ...` (same builder, same output).
"""

from mipnet_jax.data import tfds_pose


class Builder(tfds_pose.Ochuman):
  """OCHuman: one example per image, the original file bytes."""
