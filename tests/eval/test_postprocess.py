"""Post-processing: greedy OKS-NMS chains, ties and the threshold boundary, rescoring and the
γ discount, single-instance modes, and whole workloads against the reference loop
(tests/oracles/reference_postprocess.py) bit for bit, all through one ``PostprocessSpec``."""


import numpy as np
import pytest

from conftest import load_oracle
from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval import oks_nms as nms
from mipnet_jax.eval import postprocess as pp
from mipnet_jax.eval.candidates import Candidates
from mipnet_jax.eval.postprocess import PostprocessSpec

COCO_SIGMAS = get_meta("coco").sigmas


REF = load_oracle("reference_postprocess")


def _reference(c: Candidates, sigmas=COCO_SIGMAS, **kw):
  rows, scores = REF.reference_postprocess(c.keypoints, c.box_score, c.area, c.image_id, c.lam,
                                           sigmas, **kw)
  return np.array(rows, np.int64), np.array(scores, np.float64)


def _assert_same_as_reference(c, sigmas=COCO_SIGMAS, **kw):
  """``postprocess`` with ``PostprocessSpec(**kw)`` equals the reference loop with ``kw``."""
  kw = {"gamma": 0.9, "gamma_mode": "power", **kw}     # the oracle defaults to the code's 0.5
  kept = pp.postprocess(c, sigmas, PostprocessSpec(**kw))
  rows, scores = _reference(c, sigmas, **kw)
  np.testing.assert_array_equal(kept.index, rows)
  np.testing.assert_array_equal(kept.score, scores)     # bit-identical scores
  return kept


def _shifted(offsets, num_joints=2, maxval=1.0):
  """Candidates [n, K, 3] whose joints all sit at (offset, 0) + a fixed pose."""
  pose = np.stack([np.arange(num_joints) * 50.0, np.zeros(num_joints)], 1)
  xy = pose[None] + np.array([[o, 0.0] for o in offsets])[:, None]
  vals = np.full((len(offsets), num_joints, 1), maxval)
  return np.concatenate([xy, vals], -1).astype(np.float32)


def _single_image(keypoints, box_score, area=10000.0, lam=None):
  n = len(keypoints)
  return Candidates(keypoints, np.asarray(box_score, np.float64), np.full(n, area),
                    np.zeros(n, np.int64), np.zeros(n, np.int64) if lam is None else lam)


def test_suppression_chain_a_drops_b_and_c_survives():
  # One sigma 0.1, s = 10000: a shift of 8 px gives OKS exp(-64/800) = 0.923 > 0.9, 16 px
  # gives exp(-256/800) = 0.726. A suppresses B; B would suppress C but is gone.
  sigmas = (0.1, 0.1)
  c = _single_image(_shifted([0.0, 8.0, 16.0]), [0.9, 0.8, 0.7])
  assert nms.oks(c.keypoints[0], c.keypoints[1], 1e4, 1e4, sigmas) == pytest.approx(
      np.exp(-0.08))
  kept = _assert_same_as_reference(c, sigmas)
  np.testing.assert_array_equal(kept.index, [0, 2])
  np.testing.assert_array_equal(kept.score, [0.9, 0.7])
  # Without A, B suppresses C.
  kept = pp.postprocess(c.take(np.array([1, 2])), sigmas, PostprocessSpec())
  np.testing.assert_array_equal(kept.index, [0])


def test_threshold_boundary_oks_equal_to_threshold_is_kept():
  sigmas = (0.1, 0.1)
  c = _single_image(_shifted([0.0, 8.0]), [0.9, 0.8])
  value = float(nms.oks(c.keypoints[0], c.keypoints[1], 1e4, 1e4, sigmas))
  at = _assert_same_as_reference(c, sigmas, nms_threshold=value)
  np.testing.assert_array_equal(at.index, [0, 1])               # OKS == thr: kept
  below = _assert_same_as_reference(c, sigmas, nms_threshold=np.nextafter(value, 0.0))
  np.testing.assert_array_equal(below.index, [0])               # OKS > thr: dropped


def test_equal_scores_resolve_as_the_references_argsort():
  sigmas = (0.1, 0.1)
  # Two identical predictions, equal scores: the survivor is argsort()[::-1][0].
  c = _single_image(_shifted([0.0, 0.0]), [0.5, 0.5])
  kept = _assert_same_as_reference(c, sigmas)
  np.testing.assert_array_equal(kept.index, [np.array([0.5, 0.5]).argsort()[::-1][0]])
  # 24 far-apart candidates with 3 score levels: all kept, in argsort()[::-1] order (NumPy's
  # default sort is not stable, so this is not the stable descending order).
  scores = np.repeat([0.3, 0.6, 0.9], 8)[np.random.default_rng(1).permutation(24)]
  c = _single_image(_shifted(np.arange(24) * 1000.0), scores)
  kept = _assert_same_as_reference(c, sigmas)
  np.testing.assert_array_equal(kept.index, scores.argsort()[::-1])


def test_merge_lists_the_lambda_1_block_first_for_n2():
  # Box 0's λ=0 and λ=1 predictions are identical with equal scores (constant discount 1):
  # which survives depends on the merged list [λ=1 rows, λ=0 rows] of the N=2 code.
  sigmas = (0.1, 0.1)
  kp = _shifted([0.0, 0.0])
  c = _single_image(kp, [0.5, 0.5], lam=np.array([0, 1]))
  kept = _assert_same_as_reference(c, sigmas, gamma=1.0, gamma_mode="constant")
  merged = np.array([1, 0])                     # rows of the merged list
  np.testing.assert_array_equal(kept.index, merged[np.array([0.5, 0.5]).argsort()[::-1][:1]])
  assert pp.reference_lambda_order(2) == (1, 0)
  assert pp.reference_lambda_order(4) == (0, 1, 2, 3)


def test_rescoring_mean_above_threshold_and_zero_when_none():
  kp = np.zeros((3, 4, 3), np.float32)
  kp[0, :, 2] = [0.5, 0.3, 0.1, 0.2]       # 0.2 itself is not > 0.2
  kp[1, :, 2] = [0.2, 0.1, 0.0, 0.15]      # no joint above 0.2
  kp[2, :, 2] = [0.9, 0.9, 0.9, 0.9]
  kpt = pp.keypoint_scores(kp)
  assert kpt.dtype == np.float32
  np.testing.assert_array_equal(kpt, np.float32([(np.float32(0.5) + np.float32(0.3)) / 2,
                                                 0.0, 0.9]))
  np.testing.assert_array_equal(pp.rescore(np.array([2.0, 3.0, 0.5]), kp),
                                [kpt[0] * 2.0, 0.0, kpt[2] * 0.5])


def test_discount_power_and_constant():
  lam = np.array([0, 1, 2, 3])
  np.testing.assert_allclose(pp.discount(np.full(4, 2.0), lam, 0.9, "power"),
                             [2.0, 1.8, 1.62, 1.458], rtol=1e-15)
  np.testing.assert_array_equal(pp.discount(np.full(4, 2.0), lam, 0.5, "constant"),
                                [2.0, 1.0, 1.0, 1.0])
  with pytest.raises(ValueError):
    pp.discount(np.ones(4), lam, 0.9, "linear")


def test_discount_is_applied_before_rescoring():
  # Find values where (box * γ) * kpt and box * (γ * kpt) round differently.
  rng = np.random.default_rng(0)
  box, kpt = rng.uniform(0.1, 1, 200), rng.uniform(0.2, 1, 200).astype(np.float32)
  i = int(np.flatnonzero(box * 0.9 * kpt != box * (0.9 * kpt))[0])
  kp = np.full((1, 3, 3), kpt[i], np.float32)
  c = _single_image(kp, [box[i]], lam=np.array([1]))
  kept = _assert_same_as_reference(c, COCO_SIGMAS[:3], gamma=0.9, gamma_mode="power")
  assert kept.score[0] == kpt[i] * (box[i] * 0.9)


def _workload(seed, num_images=120, num_lambdas=2, num_joints=17):
  """Crowded images with near-duplicate predictions (OKS around 0.9), quantised maxvals and
  box scores (ties), exact duplicates, all-low candidates, rows shuffled across images."""
  rng = np.random.default_rng(seed)
  kps, boxes, areas, images = [], [], [], []
  for img in range(num_images):
    people = rng.uniform(0, 400, (rng.integers(1, 5), 1, 2)) + rng.normal(
        0, 30, (1, num_joints, 2))
    n = int(rng.integers(1, 9)) * num_lambdas
    who = rng.integers(0, len(people), n)
    noise = rng.choice([0.0, 1.0, 3.0, 6.0, 20.0], (n, 1, 1))
    xy = people[who] + noise * rng.normal(0, 1, (n, num_joints, 2))
    vals = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], (n, num_joints, 1))
    vals[rng.random(n) < 0.1] = 0.1
    kp = np.concatenate([xy, vals], -1)
    dup = rng.random(n) < 0.15
    kp[dup] = kp[0]
    kps.append(kp)
    boxes.append(rng.choice([0.5, 1.0], n))
    areas.append(rng.choice([2e3, 8e3, 3e4], n))
    images.append(np.full(n, 1000 + 3 * img))
  perm = rng.permutation(sum(len(b) for b in boxes))
  lam = np.tile(np.arange(num_lambdas), len(perm) // num_lambdas)
  return Candidates(np.concatenate(kps).astype(np.float32)[perm],
                    np.concatenate(boxes)[perm], np.concatenate(areas)[perm],
                    np.concatenate(images)[perm], lam)


@pytest.mark.parametrize("seed,num_lambdas,gamma,mode,total,kept",
                         [(0, 2, 0.5, "constant", 1860, 1142), (1, 2, 0.9, "power", 1836, 1122),
                          (2, 3, 0.9, "power", 2652, 1494), (3, 1, 0.9, "power", 891, 643)])
def test_random_workloads_equal_the_reference(seed, num_lambdas, gamma, mode, total, kept):
  c = _workload(seed, num_images=200, num_lambdas=num_lambdas)
  out = _assert_same_as_reference(c, gamma=gamma, gamma_mode=mode)
  # The reference's counts on these seeded workloads (about 4 in 10 candidates suppressed).
  assert (len(c), len(out.index)) == (total, kept)


def test_prefilter_changes_nothing():
  c = _workload(4)
  scores = pp.rescore(c.box_score, c.keypoints)
  rows, starts = pp._image_blocks(c.image_id, np.arange(len(c)), np.zeros(len(c), np.int64))
  args = (c.keypoints[rows], c.area[rows], scores[rows], starts, COCO_SIGMAS)
  for threshold in (0.5, 0.9, 0.97, 1.0):
    np.testing.assert_array_equal(nms.oks_nms(*args, threshold=threshold),
                                  nms.oks_nms(*args, threshold=threshold, prefilter=False))


def test_prefilter_is_exact_at_its_tightest():
  # K = 2, t = 0.9: each prefilter group is one joint and its bound is e < -ln(0.9), the
  # uniform shift's own critical value (8 * 0.01 * 10000 * 0.10536 = 84.29 px^2, 9.181 px).
  shifts = np.linspace(9.17, 9.19, 401)
  kp = np.concatenate([_shifted([0.0, d]) for d in shifts])
  n = len(kp)
  c = Candidates(kp, np.tile([0.9, 0.8], n // 2), np.full(n, 1e4),
                 np.repeat(np.arange(n // 2), 2), np.zeros(n, np.int64))
  kept = _assert_same_as_reference(c, (0.1, 0.1))
  # Both joints shifted by d: OKS = exp(-d^2 / 800), kept when <= 0.9, i.e. d >= 9.180872 px;
  # the nearest shifts are 2e-5 px away, far beyond float32 rounding. Every first candidate
  # stays, the second ones exactly for the shifts past the critical value (183 of 401).
  second = kept.index[kept.index % 2 == 1] // 2
  np.testing.assert_array_equal(kept.index[kept.index % 2 == 0] // 2, np.arange(n // 2))
  np.testing.assert_array_equal(second, np.flatnonzero(shifts > np.sqrt(-800 * np.log(0.9))))
  assert len(second) == 183
  rows, starts = pp._image_blocks(c.image_id, np.arange(n), np.zeros(n, np.int64))
  args = (c.keypoints[rows], c.area[rows], c.box_score[rows], starts, (0.1, 0.1))
  np.testing.assert_array_equal(nms.oks_nms(*args), nms.oks_nms(*args, prefilter=False))


def test_single_instance_modes():
  c = _workload(5)
  for lam in (0, 1):
    kept = _assert_same_as_reference(c, keep_lambda=lam)
    assert (c.lam[kept.index] == lam).all()
  merged = _assert_same_as_reference(c)
  assert set(np.unique(c.lam[merged.index])) == {0, 1}


def test_soft_nms_equals_the_reference():
  c = _workload(6)
  kept = _assert_same_as_reference(c, nms="soft_oks")
  _assert_same_as_reference(c, nms="soft_oks", keep_lambda=1)
  # Soft NMS drops nothing below the cap of 20 (test_soft_nms_caps_at_max_dets): every image
  # here (at most 16 candidates) keeps all of its candidates, only reordered.
  images, available = np.unique(c.image_id, return_counts=True)
  kept_images, per_image = np.unique(c.image_id[kept.index], return_counts=True)
  assert available.max() == 16
  np.testing.assert_array_equal(kept_images, images)
  np.testing.assert_array_equal(per_image, available)
  # Undecayed scores: the soft decay only orders the picks.
  full = pp.rescore(pp.discount(c.box_score, c.lam, 0.9), c.keypoints)
  np.testing.assert_array_equal(kept.score, full[kept.index])


def test_soft_nms_caps_at_max_dets():
  c = _single_image(_shifted(np.arange(30) * 1000.0), np.linspace(1, 0.1, 30))
  kept = _assert_same_as_reference(c, (0.1, 0.1), nms="soft_oks")
  np.testing.assert_array_equal(kept.index, np.arange(20))


def test_no_nms_keeps_everything_in_row_order_per_image():
  c = _workload(7)
  kept = _assert_same_as_reference(c, nms="none")
  _assert_same_as_reference(c, nms="none", keep_lambda=0)
  assert sorted(kept.index.tolist()) == list(range(len(c)))
  first = {}
  for i, img in enumerate(c.image_id.tolist()):
    first.setdefault(img, i)
  order = sorted(range(len(c)), key=lambda i: (first[c.image_id[i]], i))
  np.testing.assert_array_equal(kept.index, order)


def test_nan_keypoints_follow_the_reference():
  kp = _shifted([0.0, 500.0, 1000.0])
  kp[1, 0, 0] = np.nan                          # its OKS is NaN: not <= thr, dropped
  c = _single_image(kp, [0.9, 0.8, 0.7])
  kept = _assert_same_as_reference(c, (0.1, 0.1))
  np.testing.assert_array_equal(kept.index, [0, 2])


def test_coco_results():
  c = _single_image(_shifted([0.0, 500.0], num_joints=3, maxval=0.5), [1.0, 0.8])
  kept = pp.postprocess(c, (0.1, 0.1, 0.1), PostprocessSpec())
  results = pp.coco_results(c, kept)
  assert [r["image_id"] for r in results] == [0, 0]
  assert results[1] == {"image_id": 0, "category_id": 1, "score": 0.4,
                        "keypoints": [500.0, 0.0, 0.5, 550.0, 0.0, 0.5, 600.0, 0.0, 0.5]}
  assert all(type(v) is float for v in results[0]["keypoints"])


def test_every_spec_field_reaches_its_step():
  """in_vis_thre, nms_threshold, gamma / gamma_mode and keep_lambda each change the kept set
  or its scores on this workload, and each equals the reference with that setting."""
  c = _workload(8)
  default = _assert_same_as_reference(c)
  for kw in (dict(in_vis_thre=0.6), dict(nms_threshold=0.5), dict(gamma=0.5),
             dict(gamma_mode="constant", gamma=0.8), dict(keep_lambda=1)):
    kept = _assert_same_as_reference(c, **kw)
    same = np.array_equal(kept.index, default.index) and np.array_equal(kept.score,
                                                                         default.score)
    assert not same, kw
  # min_box_score is not applied here: boxes are filtered before the network runs.
  np.testing.assert_array_equal(
      pp.postprocess(c, COCO_SIGMAS, PostprocessSpec(min_box_score=0.99)).index, default.index)


def test_bad_inputs():
  c = _single_image(_shifted([0.0]), [1.0])
  with pytest.raises(ValueError, match=r"lambda_order \(1,\) misses some λ"):
    pp.postprocess(c, (0.1, 0.1), PostprocessSpec(), lambda_order=(1,))
