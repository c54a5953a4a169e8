"""Augmentation: flips, half-body crops and the sampled ranges, against hand computations."""

import numpy as np
import pytest

from mipnet_jax.core import meta
from mipnet_jax.data import augment


def test_flip_mirrors_swaps_and_is_an_involution():
  kp = np.zeros((17, 3), np.float32)
  kp[1] = [10, 20, 2]      # left eye
  kp[2] = [30, 21, 1]      # right eye
  kp[0] = [7, 8, 0]        # unlabelled nose: coordinates zeroed, as the reference does
  f = augment.flip_keypoints(kp, 100, meta.COCO)
  np.testing.assert_array_equal(f[1], [69, 21, 1])    # the right eye, mirrored: 100 - 1 - 30
  np.testing.assert_array_equal(f[2], [89, 20, 2])
  np.testing.assert_array_equal(f[0], [0, 0, 0])
  kp[0] = 0
  np.testing.assert_array_equal(augment.flip_keypoints(f, 100, meta.COCO), kp)


class _FixedNormal:
  """A generator whose standard normal draws are fixed (random() is 0)."""

  def __init__(self, *normals):
    self.normals = list(normals)

  def standard_normal(self):
    return self.normals.pop(0)

  def random(self):
    return 0.0


def test_half_body_upper_crop_hand_computed():
  kp = np.zeros((17, 3), np.float32)
  kp[5:9] = [[40, 50, 2], [60, 50, 2], [40, 90, 2], [60, 90, 2]]   # shoulders, elbows
  kp[11:15] = [[45, 120, 2], [55, 120, 2], [45, 160, 2], [55, 160, 2]]
  c, s = augment.half_body_center_scale(kp, meta.COCO, (256, 192), _FixedNormal(0.0))
  np.testing.assert_allclose(c, [50, 70])
  # 20 x 40 box -> widened to 30 x 40 (aspect 0.75), x1.5 / 200.
  np.testing.assert_allclose(s, [30 * 1.5 / 200, 40 * 1.5 / 200])
  c, _ = augment.half_body_center_scale(kp, meta.COCO, (256, 192), _FixedNormal(1.0))
  np.testing.assert_allclose(c, [50, 140])   # N(0,1) >= 0.5: the lower body


def test_sampled_ranges_and_probabilities():
  rng = np.random.default_rng(0)
  kp = np.zeros((17, 3), np.float32)
  center, scale = np.array([100.0, 100.0]), np.array([1.0, 1.0])
  draws = [augment.sample_augmentation(kp, center, scale, 640, meta.COCO, (256, 192),
                                       scale_factor=0.35, rotation_factor=45,
                                       half_body_prob=0.3, flip=True, rng=rng)
           for _ in range(4000)]
  s = np.array([d.scale[0] for d in draws])
  r = np.array([d.rotation for d in draws])
  f = np.array([d.flip for d in draws])
  # Scale: clip(1 + 0.35 N, 0.65, 1.35): each bound holds P(N > 1) = 15.9% of the draws, the
  # rest is normal with median 1.
  at_low, at_high = np.isclose(s, 0.65, atol=1e-6), np.isclose(s, 1.35, atol=1e-6)
  assert s.min() == pytest.approx(0.65, abs=1e-6) and s.max() == pytest.approx(1.35, abs=1e-6)
  assert abs(at_low.mean() - 0.1587) < 0.02 and abs(at_high.mean() - 0.1587) < 0.02
  assert np.median(s) == pytest.approx(1.0, abs=0.02)
  # Rotation: 60% of the draws, clip(45 N, -90, 90): 4.6% of those at +-90, median |r| 30.4.
  rotated = r[r != 0]
  assert abs(len(rotated) / len(r) - 0.6) < 0.03
  assert abs((np.abs(rotated) == 90).mean() - 0.0455) < 0.012 and np.abs(r).max() == 90
  assert np.median(np.abs(rotated)) == pytest.approx(45 * 0.6745, abs=2.0)
  assert abs(f.mean() - 0.5) < 0.03
  flipped = draws[int(np.argmax(f))]
  assert flipped.center[0] == 640 - 100 - 1
  # The same seed gives the same samples (explicit randomness, no global state).
  again = augment.sample_augmentation(kp, center, scale, 640, meta.COCO, (256, 192),
                                      scale_factor=0.35, rotation_factor=45,
                                      half_body_prob=0.3, flip=True,
                                      rng=np.random.default_rng(0))
  np.testing.assert_array_equal(again.center, draws[0].center)
  np.testing.assert_array_equal(again.scale, draws[0].scale)
  assert (again.rotation, again.flip) == (draws[0].rotation, draws[0].flip)
