"""Box and affine geometry against hand computations and round trips."""

import numpy as np
import pytest

from conftest import load_oracle
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


# ---- UDP (ViTPose) ---------------------------------------------------------------------------

def test_udp_warp_maps_box_corners_onto_first_and_last_input_pixels():
  """Rotation 0: the box c -+ 100 s lands on (0, 0) and (w - 1, h - 1), each axis by its own
  factor (w - 1) / (200 s_x), (h - 1) / (200 s_y) (HRNet: w / (200 s_x) on both)."""
  c, s = np.array([100.0, 80.0], np.float32), np.array([1.2, 1.6], np.float32)
  m = geometry.udp_crop_transform(c, s, 0.0, (256, 192))
  assert m.dtype == np.float32
  np.testing.assert_allclose(m, [[191 / 240, 0, -191 / 240 * (100 - 120)],
                                 [0, 255 / 320, -255 / 320 * (80 - 160)]], rtol=1e-6)
  corners = np.array([[100 - 120, 80 - 160], [100 + 120, 80 + 160], [100, 80]], np.float32)
  np.testing.assert_allclose(geometry.affine_points(corners, m), [[0, 0], [191, 255],
                                                                  [95.5, 127.5]], atol=2e-5)
  assert geometry.crop_transform(c, s, 0.0, (256, 192), udp=True).tolist() == m.tolist()
  assert geometry.crop_transform(c, s, 0.0, (256, 192)).dtype == np.float64   # HRNet's


def test_udp_warp_rotation_turns_image_points_by_plus_theta():
  """A point 50 px right of the centre, warped at theta = 90 degrees, lands 50 px (scaled)
  below the crop's centre: x' = s (cos t dx - sin t dy), y' = s (sin t dx + cos t dy)."""
  c, s = np.array([300.0, 200.0], np.float32), np.array([1.0, 1.0], np.float32)
  m = geometry.udp_crop_transform(c, s, 90.0, (201, 201))        # 200 px box -> 200 px
  got = geometry.affine_points(np.array([[350.0, 200.0], [300.0, 200.0]], np.float32), m)
  np.testing.assert_allclose(got, [[100, 150], [100, 100]], atol=1e-4)


def test_udp_warp_equals_the_reference_formula_and_joint_warp():
  oracle = load_oracle("reference_udp")
  rng = np.random.default_rng(3)
  for _ in range(20):
    c = rng.uniform(50, 600, 2).astype(np.float32)
    s = rng.uniform(0.3, 3.0, 2).astype(np.float32)
    r = float(rng.uniform(-80, 80))
    want = oracle.warp_matrix(r, c * 2.0, np.array([192, 256]) - 1.0, s * 200.0)
    got = geometry.udp_crop_transform(c, s, r, (256, 192))
    np.testing.assert_array_equal(got, want)
    joints = rng.uniform(0, 640, (17, 2)).astype(np.float32)
    np.testing.assert_array_equal(geometry.affine_points(joints, got),
                                  oracle.warp_joints(joints, want))
