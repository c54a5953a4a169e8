"""Heatmap codec: the reference's target rounding and weights, quarter-offset decoding,
and the encode -> decode -> image round trip through the shared geometry; ``heatmap_to_image``
(closed form) against the reference's inverse affine, on the host and on the device."""

import numpy as np
import pytest

from conftest import load_oracle
from mipnet_jax.core import codec
from mipnet_jax.core import geometry


def test_encode_peak_rounding_window_and_weights():
  joints = np.array([[10.0, 20.0], [13.9, 2.0], [500.0, 5.0], [30.0, 30.0]])
  hm, w = codec.encode_heatmaps(joints, np.array([1, 1, 1, 0]), (256, 192), (64, 48), 2.0)
  assert hm.shape == (64, 48, 4)
  # stride 4: peak at int(10/4 + .5) = 3, int(20/4 + .5) = 5, value 1.
  assert np.unravel_index(hm[..., 0].argmax(), (64, 48)) == (5, 3) and hm[5, 3, 0] == 1.0
  # Window radius 3 sigma = 6: the value 6 pixels away is exp(-36/8), 7 pixels away 0.
  np.testing.assert_allclose(hm[5, 9, 0], np.exp(-36 / 8), rtol=1e-6)
  assert hm[5, 10, 0] == 0.0
  # int(13.9/4 + .5) = 3 (truncation, not rounding to 4).
  assert np.unravel_index(hm[..., 1].argmax(), (64, 48)) == (1, 3)
  # Off the map: weight 0 and an empty heatmap. Invisible: weight 0, empty.
  np.testing.assert_array_equal(w, [1, 1, 0, 0])
  assert hm[..., 2].max() == 0 and hm[..., 3].max() == 0


def test_decode_quarter_offset_and_edges():
  hm = np.zeros((1, 10, 8, 3), np.float32)
  hm[0, 4, 5, 0] = 1.0
  hm[0, 4, 6, 0] = 0.5       # right neighbour larger -> x + 0.25
  hm[0, 3, 5, 0] = 0.2       # upper neighbour larger -> y - 0.25
  hm[0, 1, 3, 1] = 1.0       # py = 1 is not > 1: no offset
  hm[0, 2, 7, 1] = 0.5
  coords, maxvals = codec.decode_heatmaps(hm)
  np.testing.assert_allclose(coords[0, 0], [5.25, 3.75])
  np.testing.assert_allclose(coords[0, 1], [3.0, 1.0])
  np.testing.assert_allclose(coords[0, 2], [0.0, 0.0])   # all-zero map: maxval 0 -> (0, 0)
  np.testing.assert_allclose(maxvals[0], [1.0, 1.0, 0.0])


def test_round_trip_through_the_shared_geometry():
  rng = np.random.default_rng(1)
  box = [40.0, 30.0, 90.0, 160.0]
  input_hw, heatmap_hw = (256, 192), (64, 48)
  center, scale = geometry.box_to_center_scale(box, input_hw)
  joints_img = rng.uniform([45, 35], [125, 185], size=(17, 2)).astype(np.float32)
  to_input = geometry.get_affine_transform(center, scale, 0.0, input_hw)
  joints_in = geometry.affine_points(joints_img, to_input)
  hm, w = codec.encode_heatmaps(joints_in, np.ones(17), input_hw, heatmap_hw, 2.0)
  assert w.all()
  coords, _ = codec.decode_heatmaps(hm)
  back = codec.heatmap_to_image(coords[None], center[None], scale[None], heatmap_hw)[0]
  # One heatmap pixel is 200 * scale_x / 48 image pixels; decoding is exact to half of one.
  px = 200 * scale[0] / heatmap_hw[1]
  assert np.abs(back - joints_img).max() <= 0.5 * px + 1e-3


def test_vectorised_encoding_equals_the_reference_loop_bit_for_bit():
  generate_target = load_oracle("reference_pipeline").generate_target
  rng = np.random.default_rng(0)
  for sigma, input_hw, heatmap_hw in [(2.0, (256, 192), (64, 48)), (3.0, (384, 288), (96, 72)),
                                      (2.5, (256, 192), (64, 48))]:
    joints = rng.uniform(-40, [input_hw[1] + 40, input_hw[0] + 40], size=(3, 17, 2))
    vis = rng.integers(0, 3, size=(3, 17))
    hm, w = codec.encode_heatmaps(joints, vis, input_hw, heatmap_hw, sigma)
    for i in range(3):
      ref_hm, ref_w = generate_target(joints[i], vis[i], input_hw, heatmap_hw, sigma)
      np.testing.assert_array_equal(w[i], ref_w)
      np.testing.assert_array_equal(hm[i], ref_hm)
    assert 0 < w.sum() < w.size          # both on- and off-map joints were exercised


def test_device_rendering_matches_host():
  import jax.numpy as jnp
  rng = np.random.default_rng(1)
  joints = rng.uniform(-20, [212, 276], size=(2, 4, 17, 2))
  win, w = codec.heatmap_windows(joints, np.ones((2, 4, 17)), (256, 192), (64, 48), 2.0)
  host = codec.render_heatmaps(win, w, (64, 48), 2.0)
  device = codec.render_heatmaps(jnp.asarray(win), jnp.asarray(w), (64, 48), 2.0, xp=jnp)
  assert device.shape == (2, 4, 64, 48, 17) and device.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(device), host, rtol=1e-6, atol=1e-7)


def test_decode_edge_rules_ties_and_device():
  import jax.numpy as jnp
  h, w = 8, 10
  hm = np.zeros((6, h, w, 1), np.float32)
  hm[0, 4, 1, 0] = 1.0; hm[0, 4, 2, 0] = 0.5          # x = 1: not > 1, no offset
  hm[1, 4, 8, 0] = 1.0; hm[1, 4, 9, 0] = 0.5          # x = w - 2: inside, moves right
  hm[2, 4, 9, 0] = 1.0; hm[2, 4, 8, 0] = 0.5          # x = w - 1: border, no offset
  hm[3] = -1.0; hm[3, 2, 3, 0] = -0.5                 # negative maximum: (0, 0)
  hm[4, 3, 5, 0] = hm[4, 6, 2, 0] = 1.0               # tie: the first in row-major order
  hm[5, 3, 5, 0] = 1.0; hm[5, 3, 4, 0] = hm[5, 3, 6, 0] = 0.3   # equal neighbours: no move
  coords, maxvals = codec.decode_heatmaps(hm)
  np.testing.assert_array_equal(coords[:, 0], [[1, 4], [8.25, 4], [9, 4], [0, 0], [5, 3],
                                               [5, 3]])
  np.testing.assert_array_equal(maxvals[:, 0], [1, 1, 1, -0.5, 1, 1])
  d_coords, d_maxvals = codec.decode_heatmaps(jnp.asarray(hm), xp=jnp)
  np.testing.assert_array_equal(np.asarray(d_coords), coords)
  np.testing.assert_array_equal(np.asarray(d_maxvals), maxvals)


def _dark_reference(hm, coord):
  """DARK's per-joint Taylor step (np.matrix, as its get_final_preds), hm = log heatmap."""
  px, py = int(coord[0]), int(coord[1])
  h, w = hm.shape
  if 1 < px < w - 2 and 1 < py < h - 2:
    dx = 0.5 * (hm[py][px + 1] - hm[py][px - 1])
    dy = 0.5 * (hm[py + 1][px] - hm[py - 1][px])
    dxx = 0.25 * (hm[py][px + 2] - 2 * hm[py][px] + hm[py][px - 2])
    dxy = 0.25 * (hm[py + 1][px + 1] - hm[py - 1][px + 1] - hm[py + 1][px - 1]
                  + hm[py - 1][px - 1])
    dyy = 0.25 * (hm[py + 2][px] - 2 * hm[py][px] + hm[py - 2][px])
    hessian = np.matrix([[dxx, dxy], [dxy, dyy]])
    if dxx * dyy - dxy ** 2 != 0:
      coord = coord + np.squeeze(np.array((-hessian.I * np.matrix([[dx], [dy]])).T), axis=0)
  return coord


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")   # np.matrix, as DARK
def test_dark_recovers_subpixel_peaks_and_matches_its_reference():
  import cv2
  h, w = 64, 48
  yy, xx = np.mgrid[0:h, 0:w]
  truth = np.array([[12.3, 20.7], [30.8, 40.2], [1.0, 1.0]])
  hm = np.stack([np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0) for x, y in truth],
                -1).astype(np.float32)
  coords, maxvals = codec.decode_dark(hm[None])
  quarter, _ = codec.decode_heatmaps(hm[None])
  err = np.abs(coords[0, :2] - truth[:2])
  assert err.max() < 0.05 < np.abs(quarter[0, :2] - truth[:2]).max()
  np.testing.assert_array_equal(coords[0, 2], [1, 1])          # at the border: argmax only
  np.testing.assert_allclose(maxvals[0], hm.reshape(-1, 3).max(0))
  for k in range(2):                                           # the reference's own steps
    m = hm[..., k]
    padded = np.zeros((h + 10, w + 10))
    padded[5:-5, 5:-5] = m
    b = cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5].astype(np.float32)
    b = np.log(np.maximum(b * (m.max() / b.max()), 1e-10))
    start = np.array(np.unravel_index(m.argmax(), m.shape)[::-1], np.float32)
    np.testing.assert_allclose(coords[0, k], _dark_reference(b, start), atol=1e-4)


# --- heatmap -> image: the closed form against the reference's inverse affine -------------

def _random_crops(rng, count: int, input_hw):
  """(centers [M, 2], scales [M, 2]) of boxes from very wide to very tall, anywhere in a
  2000 px image, as box_to_center_scale gives them (float32)."""
  out = []
  for aspect in np.geomspace(0.15, 6.0, count):                 # box w / h
    h = rng.uniform(10, 800)
    box = [*rng.uniform(0, 2000, 2), h * aspect, h]
    out.append(geometry.box_to_center_scale(box, input_hw))
  return np.stack([c for c, _ in out]), np.stack([s for _, s in out])


def _reference_to_image(coords, centers, scales, heatmap_hw):
  """The reference's transform_preds: each box's inverse affine at heatmap size."""
  return np.stack([geometry.affine_points(
      coords[m], geometry.get_affine_transform(centers[m], scales[m], 0, heatmap_hw,
                                               inverse=True))
                   for m in range(len(coords))])


@pytest.mark.parametrize("input_hw,heatmap_hw", [((256, 192), (64, 48)),
                                                 ((384, 288), (96, 72))])
def test_heatmap_to_image_equals_the_inverse_affine_on_the_host(input_hw, heatmap_hw):
  rng = np.random.default_rng(11)
  centers, scales = _random_crops(rng, 24, input_hw)
  # [M, 2, K, 2]: two joint sets per box (e.g. two lambdas) share the box's mapping.
  coords = rng.uniform(-3, [heatmap_hw[1] + 3, heatmap_hw[0] + 3], (24, 2, 17, 2))
  got = codec.heatmap_to_image(coords, centers, scales, heatmap_hw)
  assert got.shape == coords.shape and got.dtype == np.float64
  for i in range(2):
    want = _reference_to_image(coords[:, i], centers, scales, heatmap_hw)
    np.testing.assert_allclose(got[:, i], want, rtol=0, atol=1e-9)
  # Hand-computed: the heatmap centre is the box centre; one heatmap pixel right is
  # 200 * s_x / w image pixels, and one pixel down the same (both axes sized by s_x).
  c, s = np.array([[100.0, 50.0]]), np.array([[0.96, 1.28]])
  hand = codec.heatmap_to_image(np.array([[[24.0, 32.0], [25.0, 33.0]]]), c, s, (64, 48))
  np.testing.assert_allclose(hand[0], [[100, 50], [104, 54]], rtol=0, atol=1e-9)


def test_heatmap_to_image_on_the_device_within_a_thousandth_of_a_pixel():
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(12)
  centers, scales = _random_crops(rng, 32, (256, 192))
  coords = rng.uniform(-3, [51, 67], (32, 17, 2)).astype(np.float32)
  device = jax.jit(lambda c, ce, s: codec.heatmap_to_image(c, ce, s, (64, 48), xp=jnp))(
      coords, centers, scales)
  assert device.dtype == jnp.float32 and device.shape == coords.shape
  want = _reference_to_image(coords.astype(np.float64), centers, scales, (64, 48))
  np.testing.assert_allclose(np.asarray(device, np.float64), want, rtol=0, atol=1e-3)


def test_heatmap_to_image_undoes_the_encoding_geometry():
  """Encode side: image -> input crop (get_affine_transform at input size) -> heatmap pixels
  (divided by the stride). heatmap_to_image maps those back onto the joints."""
  rng = np.random.default_rng(13)
  input_hw, heatmap_hw = (256, 192), (64, 48)
  centers, scales = _random_crops(rng, 12, input_hw)
  joints = centers[:, None, :] + rng.uniform(-60, 60, (12, 17, 2))
  stride = np.array([input_hw[1] / heatmap_hw[1], input_hw[0] / heatmap_hw[0]])
  on_heatmap = np.stack([
      geometry.affine_points(joints[m], geometry.get_affine_transform(
          centers[m], scales[m], 0.0, input_hw)) / stride for m in range(12)])
  back = codec.heatmap_to_image(on_heatmap, centers, scales, heatmap_hw)
  np.testing.assert_allclose(back, joints, rtol=0, atol=1e-6)


# ---- UDP (ViTPose's codec) -------------------------------------------------------------------

UDP_STRIDE = np.array([191 / 47, 255 / 63])          # (input - 1) / (heatmap - 1), (x, y)


def _udp_joints(rng, shape):
  """Joints in input pixels: most on the crop, some near or past its border."""
  return rng.uniform(-30, [222, 286], size=shape + (2,)).astype(np.float32)


def test_udp_windows_and_maps_equal_the_reference_loop():
  """Windows, centres and weights -> the reference's per-joint patches bit for bit (NumPy 1's
  float32 patch arithmetic), within 2e-7 of NumPy 2's float64 one; off-map joints weigh 0."""
  oracle = load_oracle("reference_udp")
  rng = np.random.default_rng(0)
  joints = _udp_joints(rng, (6, 17))
  visible = (rng.random((6, 17)) > 0.2).astype(np.float32)
  windows, weight = codec.heatmap_windows(joints, visible, (256, 192), (64, 48), 2.0, udp=True)
  assert windows.shape == (6, 17, 6) and windows.dtype == np.float32
  maps = codec.render_heatmaps(windows, weight, (64, 48), 2.0)
  for i in range(6):
    want, want_w = oracle.udp_target(joints[i], visible[i], (192, 256), (48, 64), 2)
    np.testing.assert_array_equal(weight[i], want_w)
    np.testing.assert_array_equal(np.moveaxis(maps[i], -1, 0), want)
    new, _ = oracle.udp_target(joints[i], visible[i], (192, 256), (48, 64), 2, False)
    np.testing.assert_allclose(np.moveaxis(maps[i], -1, 0), new, rtol=0, atol=2e-7)
  assert 0 < weight.sum() < visible.sum()            # some joints fell off the map


def test_udp_target_peak_is_the_sub_pixel_joint():
  """A joint at input x = 10 sits at heatmap x = 10 / (191/47) = 2.4607; the window is the
  integer rule (mu = int(2.96) = 2, pixels 2 - 6 .. 2 + 6; y: 31.5 -> mu 32, 26 .. 38) and the
  values are the Gaussian around (2.4607, 31.5), not around a pixel (as HRNet's are)."""
  joints = np.array([[10.0, 127.5]], np.float32)                  # y: heatmap 31.5 exactly
  windows, w = codec.heatmap_windows(joints, np.ones(1), (256, 192), (64, 48), 2.0, udp=True)
  mu = 10 / UDP_STRIDE[0]
  np.testing.assert_allclose(windows[0], [-4, 26, 9, 39, 6 + mu - 2, 5.5], rtol=1e-6)
  hm = codec.render_heatmaps(windows, w, (64, 48), 2.0)[..., 0]
  for x, y in ((2, 31), (3, 32), (8, 31), (0, 26), (1, 38)):
    np.testing.assert_allclose(hm[y, x], np.exp(-((x - mu) ** 2 + (y - 31.5) ** 2) / 8),
                               rtol=1e-6)
  assert hm[31, 9] == 0 and hm[25, 2] == 0                      # outside the window


def test_udp_device_rendering_matches_host():
  import jax.numpy as jnp
  rng = np.random.default_rng(1)
  win, w = codec.heatmap_windows(_udp_joints(rng, (2, 4, 17)), np.ones((2, 4, 17)),
                                 (256, 192), (64, 48), 2.0, udp=True)
  host = codec.render_heatmaps(win, w, (64, 48), 2.0)
  device = codec.render_heatmaps(jnp.asarray(win), jnp.asarray(w), (64, 48), 2.0, xp=jnp)
  assert device.shape == (2, 4, 64, 48, 17) and device.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(device), host, rtol=1e-6, atol=1e-7)


def _decode_cases(rng):
  """[5, 64, 48, 17] heatmaps: noisy Gaussians anywhere (borders included), a negative map
  (argmax -1, -1), an all-zero map and a peak on the corner pixel."""
  yy, xx = np.mgrid[0:64, 0:48]
  mu = rng.uniform(-1, [48, 64], size=(5, 17, 2))
  hm = np.exp(-((xx - mu[..., :1, None]) ** 2 + (yy - mu[..., 1:, None]) ** 2) / 8)
  hm = (hm + rng.normal(0, 0.03, hm.shape)).astype(np.float32)
  hm[1, 3] -= 2.0
  hm[2, 0] = 0.0
  hm[3, 5] = 0.0
  hm[3, 5, 0, 0] = 1.0
  return np.moveaxis(hm, 1, -1), mu


def test_udp_decoding_equals_the_reference_post_dark_udp():
  oracle = load_oracle("reference_udp")
  hm, _ = _decode_cases(np.random.default_rng(2))
  centers = np.array([[100, 120], [50, 60], [300, 200], [80, 90], [10, 20]], np.float32)
  scales = np.array([[1, 1.3], [0.5, 0.7], [2, 2.6], [1.5, 2], [0.3, 0.4]], np.float32)
  want, want_max = oracle.keypoints_from_heatmaps_udp(np.moveaxis(hm, -1, 1), centers, scales)
  coords, maxvals = codec.decode_udp_dark(hm)
  assert coords[1, 3].tolist() != [-1, -1]          # the (-1, -1) joint still takes a step
  got = codec.heatmap_to_image(coords, centers, scales, (64, 48), udp=True)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(maxvals, want_max[..., 0])


def test_udp_device_decoding_matches_host():
  import jax
  import jax.numpy as jnp
  hm, _ = _decode_cases(np.random.default_rng(4))
  coords, maxvals = codec.decode_udp_dark(hm)
  d_coords, d_max = jax.jit(lambda h: codec.decode_udp_dark(h, xp=jnp))(hm)
  np.testing.assert_array_equal(np.asarray(d_max), maxvals)
  np.testing.assert_allclose(np.asarray(d_coords), coords, atol=1e-4)


def test_udp_heatmap_to_image_hand_computed():
  """Heatmap pixel 0 -> the box's left / top edge, w - 1 / h - 1 -> its right / bottom edge
  (HRNet: pixel w would be the right edge)."""
  c, s = np.array([[100.0, 80.0]], np.float32), np.array([[1.2, 1.6]], np.float32)
  got = codec.heatmap_to_image(np.array([[[0.0, 0.0], [47.0, 63.0], [23.5, 31.5]]]), c, s,
                               (64, 48), udp=True)
  np.testing.assert_allclose(got[0], [[-20, -80], [220, 240], [100, 80]], atol=2e-5)


def test_udp_round_trip_on_ideal_gaussians_is_exact_where_quarter_is_not():
  """Image joints -> UDP warp -> heatmap pixels (stride (in - 1)/(hm - 1)); ideal Gaussians
  there; post_dark_udp + UDP's transform_preds bring them back within 1e-3 image px (within
  1e-4 heatmap px), while argmax + quarter offset is off by up to 0.25 heatmap px."""
  rng = np.random.default_rng(5)
  centers = rng.uniform(200, 400, (4, 2)).astype(np.float32)
  scales = np.stack([np.full(4, 0.9), np.full(4, 1.2)], -1).astype(np.float32)
  joints = centers[:, None] + rng.uniform(-55, 55, (4, 17, 2)).astype(np.float32)   # inside
  on_heatmap = np.stack([geometry.affine_points(joints[m], geometry.udp_crop_transform(
      centers[m], scales[m], 0.0, (256, 192))) for m in range(4)]) / UDP_STRIDE
  yy, xx = np.mgrid[0:64, 0:48]
  hm = np.exp(-((xx - on_heatmap[..., :1, None]) ** 2 + (yy - on_heatmap[..., 1:, None]) ** 2)
              / 8).astype(np.float32)
  hm = np.moveaxis(hm, 1, -1)
  coords, _ = codec.decode_udp_dark(hm)
  assert np.abs(coords - on_heatmap).max() < 1e-4
  back = codec.heatmap_to_image(coords, centers, scales, (64, 48), udp=True)
  assert np.abs(back - joints).max() < 1e-3
  quarter, _ = codec.decode_heatmaps(hm)
  assert np.abs(quarter - on_heatmap).max() > 0.2


def test_udp_joint_on_a_heatmap_pixel_decodes_to_its_image_point():
  """Encode (UDP warp, targets) -> decode (post_dark_udp, transform_preds) at rotation 0: a
  joint whose heatmap position is a whole pixel comes back to the same image point."""
  center, scale = np.array([320.0, 240.0], np.float32), np.array([0.96, 1.28], np.float32)
  pixels = np.array([[10.0, 20.0], [24.0, 31.0], [37.0, 50.0]])              # heatmap (x, y)
  size = scale * 200
  image_pts = (pixels * size / [47, 63] + center - size / 2).astype(np.float32)
  to_input = geometry.udp_crop_transform(center, scale, 0.0, (256, 192))
  joints = geometry.affine_points(image_pts, to_input)
  maps, _ = codec.encode_heatmaps(joints, np.ones(3), (256, 192), (64, 48), 2.0, udp=True)
  coords, _ = codec.decode_udp_dark(maps[None])
  np.testing.assert_allclose(coords[0], pixels, atol=1e-3)
  back = codec.heatmap_to_image(coords, center[None], scale[None], (64, 48), udp=True)[0]
  np.testing.assert_allclose(back, image_pts, atol=1e-2)
