"""keypoint_mse against a hand computation and the reference loop of HRNet's JointsMSELoss."""

import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import reference_joints_mse

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


def test_keypoint_mse_equals_the_reference_loop():
  rng = np.random.default_rng(0)
  rows, h, w, k = 6, 8, 6, 17
  pred = rng.normal(0, 0.3, (rows, h, w, k)).astype(np.float32)
  target = rng.random((rows, h, w, k)).astype(np.float32)
  weight = (rng.random((rows, k)) > 0.3).astype(np.float32)
  want = reference_joints_mse(np.moveaxis(pred, -1, 1), np.moveaxis(target, -1, 1), weight)
  got = keypoint_mse(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(weight))
  assert got.dtype == jnp.float32 and got.shape == ()
  assert float(got) == pytest.approx(want, rel=1e-6)
  # bfloat16 predictions are compared in float32.
  got16 = keypoint_mse(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target), jnp.asarray(weight))
  assert got16.dtype == jnp.float32 and float(got16) == pytest.approx(want, rel=1e-2)
