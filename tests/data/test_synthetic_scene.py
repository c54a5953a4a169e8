"""People and scenes of the synthetic set: occlusion labels constructed by hand."""

import numpy as np

from mipnet_jax.data import synthetic_scene as scene

HW = (256, 256)


def test_occlusion_labels_constructed():
  rng = np.random.default_rng(7)
  fig = scene.make_figure(rng, 120.)
  back = scene.place(fig, (80., 128.), HW)
  front = scene.place(fig, (80., 128.), HW)      # the same body exactly in front
  apart = scene.place(scene.make_figure(rng, 60.), (215., 128.), HW)
  cut = scene.place(scene.make_figure(rng, 120.), (5., 128.), HW)   # half outside
  anns = scene.annotate([back, apart, cut, front])
  v = [np.array(a["keypoints"][2::3]) for a in anns]
  assert np.all(v[0] == 1)                      # covered everywhere by `front`
  assert np.all(v[1] == 2) and np.all(v[3] == 2)
  left_of_image = cut.joints[:, 0] < 0
  assert 0 < left_of_image.sum() < 17
  np.testing.assert_array_equal(v[2] == 0, left_of_image)
  # A person in front hides only the joints under its body: shift it and some show again.
  side = scene.place(fig, (80. + 0.3 * 120, 128.), HW)
  v_side = np.array(scene.annotate([back, side])[0]["keypoints"][2::3])
  assert (v_side == 1).any() and (v_side == 2).any()
  for k in np.flatnonzero(v_side == 2):
    x, y = np.round(back.joints[k]).astype(int)
    assert side.mask[y, x] == 0
