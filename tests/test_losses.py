"""keypoint_mse against a hand computation of HRNet's JointsMSELoss."""

import jax.numpy as jnp
import numpy as np

from mipnet_jax.train.losses import keypoint_mse


def test_keypoint_mse_hand_computed():
  # 2 rows, 1x2 heatmaps, 2 joints; joint 1 of row 1 has weight 0.
  pred = np.zeros((2, 1, 2, 2), np.float32)
  target = np.zeros((2, 1, 2, 2), np.float32)
  pred[0, 0, 0, 0] = 1.0     # row 0 joint 0: squared error 1 on one pixel
  pred[1, 0, 1, 1] = 3.0     # row 1 joint 1: weight 0 -> ignored
  target[1, 0, 0, 0] = 2.0   # row 1 joint 0: squared error 4 on one pixel
  weight = np.array([[1, 1], [1, 0]], np.float32)
  # Per joint: 0.5 * mean over 2 rows x 2 pixels. Joint 0: 0.5 * (1 + 4) / 4; joint 1: 0.
  expected = (0.5 * 5 / 4 + 0.0) / 2
  loss = keypoint_mse(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(weight))
  assert abs(float(loss) - expected) < 1e-7
