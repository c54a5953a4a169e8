"""Heatmap codec: the reference's target rounding and weights, quarter-offset decoding,
and the encode -> decode -> image round trip through the shared geometry."""

import numpy as np

from mipnet_jax import codec
from mipnet_jax.data import geometry


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
  back = codec.heatmap_to_image(coords, center, scale, heatmap_hw)
  # One heatmap pixel is 200 * scale_x / 48 image pixels; decoding is exact to half of one.
  px = 200 * scale[0] / heatmap_hw[1]
  assert np.abs(back - joints_img).max() <= 0.5 * px + 1e-3


def _generate_target_loop(joints, vis, input_hw, heatmap_hw, sigma):
  """The reference's per-joint loop (generate_target, gaussian branch), as an oracle."""
  h, w = heatmap_hw
  stride = np.array([input_hw[1] / w, input_hw[0] / h])
  target = np.zeros((len(joints), h, w), np.float32)
  weight = (vis > 0).astype(np.float32)
  radius = sigma * 3
  for j in range(len(joints)):
    mu_x = int(joints[j][0] / stride[0] + 0.5)
    mu_y = int(joints[j][1] / stride[1] + 0.5)
    ul = [int(mu_x - radius), int(mu_y - radius)]
    br = [int(mu_x + radius + 1), int(mu_y + radius + 1)]
    if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
      weight[j] = 0
      continue
    size = 2 * radius + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
    g_x = max(0, -ul[0]), min(br[0], w) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], h) - ul[1]
    img_x = max(0, ul[0]), min(br[0], w)
    img_y = max(0, ul[1]), min(br[1], h)
    if weight[j] > 0.5:
      target[j][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return target.transpose(1, 2, 0), weight


def test_vectorised_encoding_equals_the_reference_loop_bit_for_bit():
  rng = np.random.default_rng(0)
  for sigma, input_hw, heatmap_hw in [(2.0, (256, 192), (64, 48)), (3.0, (384, 288), (96, 72)),
                                      (2.5, (256, 192), (64, 48))]:
    joints = rng.uniform(-40, [input_hw[1] + 40, input_hw[0] + 40], size=(3, 17, 2))
    vis = rng.integers(0, 3, size=(3, 17))
    hm, w = codec.encode_heatmaps(joints, vis, input_hw, heatmap_hw, sigma)
    for i in range(3):
      ref_hm, ref_w = _generate_target_loop(joints[i], vis[i], input_hw, heatmap_hw, sigma)
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
