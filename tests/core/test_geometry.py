"""Box and affine geometry against hand computations and round trips."""

import numpy as np
import pytest

from mipnet_jax.core import geometry


def test_box_to_center_scale_hand_computed():
  # 30 x 100 box, 192/256 input: widened to 75 x 100, then x1.25 / 200.
  c, s = geometry.box_to_center_scale([10, 20, 30, 100], (256, 192))
  np.testing.assert_allclose(c, [25, 70])
  np.testing.assert_allclose(s, [75 * 1.25 / 200, 100 * 1.25 / 200])
  # A wide box is heightened instead.
  _, s = geometry.box_to_center_scale([0, 0, 150, 100], (256, 192))
  np.testing.assert_allclose(s, [150 * 1.25 / 200, 200 * 1.25 / 200])


def test_affine_without_rotation_is_scale_and_shift():
  c, s = np.array([25.0, 70.0]), np.array([0.46875, 0.625])
  t = geometry.get_affine_transform(c, s, 0.0, (256, 192))
  k = 192 / (200 * s[0])                       # output pixels per image pixel
  pts = np.array([[25.0, 70.0], [0.0, 0.0], [40.0, 10.0]])
  expected = (pts - c) * k + [96, 128]
  np.testing.assert_allclose(geometry.affine_points(pts, t), expected, atol=1e-4)


def test_affine_rotation_hand_computed():
  # scale 1 -> 200 px crop onto 200 px: unit zoom. With r = +90 degrees the reference's
  # source direction (0, -100) turns into (+100, 0): the image point 100 px right of the
  # center goes to the top middle of the output, i.e. (dx, dy) -> (dy, -dx).
  c, s = np.array([50.0, 50.0]), np.array([1.0, 1.0])
  t = geometry.get_affine_transform(c, s, 90.0, (200, 200))
  pts = np.array([[50.0, 50.0], [60.0, 50.0], [50.0, 40.0], [57.0, 53.0]])
  expected = np.array([[100.0, 100.0], [100.0, 90.0], [90.0, 100.0], [103.0, 93.0]])
  np.testing.assert_allclose(geometry.affine_points(pts, t), expected, atol=1e-4)


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_inverse_undoes_forward(rot):
  c, s = np.array([120.5, 80.25]), np.array([0.9, 1.2])
  fwd = geometry.get_affine_transform(c, s, rot, (256, 192))
  inv = geometry.get_affine_transform(c, s, rot, (256, 192), inverse=True)
  pts = np.random.default_rng(0).uniform(0, 300, size=(10, 2))
  np.testing.assert_allclose(geometry.affine_points(geometry.affine_points(pts, fwd), inv),
                             pts, atol=1e-3)
