"""Candidates: the flat (box, λ) layout, the padded-box area as the reference rounds it,
saving and loading without pickles, and the shape checks."""

import numpy as np
import pytest

from mipnet_jax.eval import candidates as cands


def test_flat_candidates_are_box_major_and_round_trip(tmp_path):
  kp = np.arange(2 * 3 * 17 * 3, dtype=np.float32).reshape(2, 3, 17, 3)
  c = cands.flat_candidates(kp, np.array([0.9, 0.5]), np.array([[1.0, 2.0], [0.5, 0.5]]),
                            np.array([7, 8]))
  assert len(c) == 6
  np.testing.assert_array_equal(c.lam, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(c.image_id, [7, 7, 7, 8, 8, 8])
  np.testing.assert_array_equal(c.box_score, [0.9, 0.9, 0.9, 0.5, 0.5, 0.5])
  np.testing.assert_array_equal(c.keypoints[4], kp[1, 1])
  np.testing.assert_array_equal(c.area, [200 * 400] * 3 + [100 * 100] * 3)
  assert c.keypoints.dtype == np.float32 and c.area.dtype == c.box_score.dtype == np.float64
  cands.save_candidates(str(tmp_path / "c.npz"), c)
  back = cands.load_candidates(str(tmp_path / "c.npz"))
  for name in ("keypoints", "box_score", "area", "image_id", "lam"):
    np.testing.assert_array_equal(getattr(back, name), getattr(c, name))
    assert getattr(back, name).dtype == getattr(c, name).dtype
  part = c.take(np.array([5, 1]))
  np.testing.assert_array_equal(part.lam, [2, 1])
  np.testing.assert_array_equal(part.keypoints, c.keypoints[[5, 1]])


def test_padded_box_area_rounds_as_the_reference():
  scale = np.array([[1.2, 1.6], [0.3337, 0.4449]], np.float32)
  # The reference: np.prod(s * 200, 1) on float32 scales (a float32 product, then float64).
  np.testing.assert_array_equal(cands.padded_box_area(scale), np.prod(scale * 200, 1))
  assert cands.padded_box_area(scale).dtype == np.float64
  assert cands.padded_box_area(np.array([[0.5, 0.25]])).tolist() == [5000.0]


def test_shape_errors_name_the_field():
  ok = dict(keypoints=np.zeros((2, 17, 3)), box_score=np.zeros(2), area=np.zeros(2),
            image_id=np.zeros(2), lam=np.zeros(2))
  with pytest.raises(ValueError, match=r"box_score must be \[2\], got \(3,\)"):
    cands.Candidates(**{**ok, "box_score": np.zeros(3)})
  with pytest.raises(ValueError, match="lam must be >= 0"):
    cands.Candidates(**{**ok, "lam": [0, -1]})
  with pytest.raises(ValueError, match=r"keypoints must be \[M, K, 3\], got \(2, 17, 2\)"):
    cands.Candidates(**{**ok, "keypoints": np.zeros((2, 17, 2))})


def test_load_refuses_pickled_arrays(tmp_path):
  path = tmp_path / "c.npz"
  arrays = dict(keypoints=np.zeros((1, 17, 3)), box_score=np.zeros(1), area=np.zeros(1),
                image_id=np.array([{"x": 1}], object), lam=np.zeros(1))
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match="allow_pickle=False"):
    cands.load_candidates(str(path))
