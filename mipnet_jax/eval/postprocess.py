"""Host-side post-processing of MIPNet predictions: γ discount, rescoring, merge, OKS-NMS.

A candidate is one (box, λ) prediction: keypoints (x, y, maxval) in image pixels, box score,
the padded crop's area (s_x*200)(s_y*200) (not the box's own area) and its image. The steps,
as [MIP] ``validate_lambda_quantitative`` + ``coco.py::evaluate_lambda`` and [HR] ``nms.py``:

1. Discount, in the validation loop, so before rescoring: box score of λ >= 1 times γ^λ
   (paper, γ = 0.9) or a constant (code: ``DECAY_THRE`` 0.5 for N = 2, 0.5 for all λ > 0 N > 2).
2. Rescoring: score = kpt_score x discounted box score; kpt_score = mean of the maxvals
   > ``in_vis_thre`` (0.2), 0 if none.
3. Merge: an image's candidates of all λ in one list, λ block by λ block in the code's "mode"
   order (N = 2 stores mode 1 for λ = 0, so λ = 1 comes first; N > 2: λ = 0, 1, ...), rows in
   order within a block. Only ties depend on it.
4. Greedy OKS-NMS per image: order = scores.argsort()[::-1] (NumPy's default sort is not
   stable; ties resolve as that very call does, so it is made per image), keep the top, drop
   the remaining with OKS > thr (OKS <= thr stays, a NaN OKS drops), repeat. The reference's
   NMS ``in_vis_thre`` is None (its branch is buggy: ``list(a) and list(b)`` is ``list(b)``);
   not offered. ``soft_oks``: the reference's soft variant; ``none``: CrowdPose (no NMS).

Results are bit-identical to the reference loop under this NumPy (NumPy 2 sums float32
maxvals in float32 and compares them with 0.2 in float32; NumPy 1, the authors', did both in
float64 and sorted ties differently): ``tests/oracles/reference_postprocess.py`` is that
loop, the tests' oracle. ``PostprocessSpec`` holds the settings, built once from
``config.eval`` and used alike by evaluation, the sweep and the Predictor (in process or from
a bundle). A whole split is processed at once; OKS and the two NMS variants are in
eval/oks_nms.py, the candidates in eval/candidates.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mipnet_jax.eval.candidates import Candidates
from mipnet_jax.eval.oks_nms import oks_nms, soft_oks_nms


@dataclasses.dataclass(frozen=True)
class PostprocessSpec:
  """Discount, rescoring, merge and NMS of the (box, λ) candidates (eval/postprocess.py).

  Attributes:
    gamma / gamma_mode: λ >= 1 box scores x γ^λ ("power", the paper) or x γ ("constant",
      the authors' code with γ = 0.5).
    in_vis_thre: joints above it enter the rescoring mean.
    nms: "oks" (greedy OKS-NMS), "soft_oks" or "none" (CrowdPose); nms_threshold its OKS.
    keep_lambda: None merges every λ; k keeps only λ = k (single-instance mode, Table 10).
    min_box_score: boxes scoring below it are dropped before the network runs.
  """

  gamma: float = 0.9
  gamma_mode: str = "power"
  in_vis_thre: float = 0.2
  nms: str = "oks"
  nms_threshold: float = 0.9
  keep_lambda: int | None = None
  min_box_score: float = 0.0

  def __post_init__(self):
    if self.gamma_mode not in ("power", "constant"):
      raise ValueError(f"config.eval.gamma_mode must be 'power' or 'constant', got "
                       f"{self.gamma_mode!r}")
    if self.nms not in ("oks", "soft_oks", "none"):
      raise ValueError(f"config.eval.nms must be 'oks', 'soft_oks' or 'none', got {self.nms!r}")

  @classmethod
  def from_eval(cls, ev: Mapping[str, Any]) -> PostprocessSpec:
    """From ``config.eval`` (a ConfigDict, or the dict of a bundle's config.json), where
    ``keep_lambda`` < 0 means merged."""
    keep = int(ev["keep_lambda"])
    return cls(gamma=float(ev["gamma"]), gamma_mode=str(ev["gamma_mode"]),
               in_vis_thre=float(ev["in_vis_thre"]), nms=str(ev["nms"]),
               nms_threshold=float(ev["nms_threshold"]), keep_lambda=None if keep < 0 else keep,
               min_box_score=float(ev["min_box_score"]))

  @property
  def mode(self) -> str:
    """"merged" or "lambda<k>"."""
    return "merged" if self.keep_lambda is None else f"lambda{self.keep_lambda}"


@dataclasses.dataclass(frozen=True)
class Kept:
  """Post-processed instances.

  Attributes:
    index: [R] int64 rows of the ``Candidates`` kept, in the reference's output order: images
      by first appearance, then NMS keep order (``none``: row order).
    score: [R] float64 final score (discounted box score x keypoint score).
  """

  index: np.ndarray
  score: np.ndarray


def discount(box_scores: np.ndarray, lam: np.ndarray, gamma: float,
             mode: str = "power") -> np.ndarray:
  """[M] box scores, [M] λ -> [M] discounted scores.

  ``power``: x γ^λ (paper). ``constant``: x γ for every λ > 0 (the authors' code, γ = 0.5).
  """
  lam = np.asarray(lam, np.int64)
  if mode == "power":
    factors = np.array([gamma ** k for k in range(int(lam.max(initial=0)) + 1)])
  elif mode == "constant":
    factors = np.array([1.0] + [gamma] * int(lam.max(initial=0)))
  else:
    raise ValueError(f"unknown discount mode {mode!r} (power or constant)")
  return np.asarray(box_scores, np.float64) * factors[lam]


def keypoint_scores(keypoints: np.ndarray, in_vis_thre: float = 0.2) -> np.ndarray:
  """[M, K, 3] -> [M] mean of the maxvals > ``in_vis_thre`` (0 if none), in the keypoints'
  dtype; summed joint by joint as the reference's loop does."""
  maxvals = keypoints[..., 2]
  valid = maxvals > in_vis_thre
  total = np.zeros(len(maxvals), maxvals.dtype)
  for k in range(maxvals.shape[1]):
    total = total + np.where(valid[:, k], maxvals[:, k], 0)
  count = valid.sum(axis=1)
  return np.where(count > 0, total / np.maximum(count, 1).astype(total.dtype), total)


def rescore(box_scores: np.ndarray, keypoints: np.ndarray,
            in_vis_thre: float = 0.2) -> np.ndarray:
  """[M] (discounted) box scores, [M, K, 3] -> [M] float64 score = kpt_score x box_score."""
  return keypoint_scores(keypoints, in_vis_thre) * np.asarray(box_scores, np.float64)


def reference_lambda_order(num_lambdas: int) -> tuple[int, ...]:
  """λ blocks in the order the reference merges them (its "mode" order)."""
  return (1, 0) if num_lambdas == 2 else tuple(range(num_lambdas))


def _image_blocks(image_id: np.ndarray, rows: np.ndarray, block_key: np.ndarray):
  """``rows`` [R] grouped by image (images ordered by first appearance in ``image_id`` [M]),
  within an image by ``block_key`` [R], then row.

  Returns (grouped [R] rows, starts [I + 1]): image i holds grouped[starts[i]:starts[i + 1]].
  """
  _, first, inverse = np.unique(image_id, return_index=True, return_inverse=True)
  image_rank = np.empty(len(first), np.int64)
  image_rank[np.argsort(first)] = np.arange(len(first))
  rank = image_rank[inverse.reshape(-1)][rows]
  grouped = rows[np.lexsort((rows, block_key, rank))]
  starts = np.concatenate([[0], np.cumsum(np.bincount(rank, minlength=len(first)))])
  return grouped, starts


def _block_keys(lam: np.ndarray, lambda_order: Sequence[int]) -> np.ndarray:
  """[M] λ -> [M] position of each λ block in the merge order ``lambda_order``."""
  table = np.full(max(int(lam.max(initial=0)), max(lambda_order)) + 1, -1)
  table[list(lambda_order)] = np.arange(len(lambda_order))
  if (table[lam] < 0).any():
    raise ValueError(f"lambda_order {tuple(lambda_order)} misses some λ of the candidates")
  return table[lam]


def postprocess(candidates: Candidates, sigmas: Sequence[float], spec: PostprocessSpec, *,
                lambda_order: Sequence[int] | None = None, soft_max_dets: int = 20) -> Kept:
  """Discount, rescore, merge per image and suppress: candidates [M] -> kept instances.

  ``spec.nms``: ``oks`` (greedy OKS-NMS, COCO/OCHuman), ``soft_oks`` (the reference's soft
  variant, ``nms_threshold`` is its Gaussian width) or ``none`` (CrowdPose: every instance
  submitted). ``spec.keep_lambda``: None merges all λ; k keeps only λ == k (the
  single-instance rows of SUPP Table 10). lambda_order: λ blocks in merge order (default
  ``reference_lambda_order``). ``spec.min_box_score`` is not applied here (boxes are filtered
  before the network runs).
  """
  gamma, gamma_mode, in_vis_thre = spec.gamma, spec.gamma_mode, spec.in_vis_thre
  nms, nms_threshold, keep_lambda = spec.nms, spec.nms_threshold, spec.keep_lambda
  c = candidates
  scores = rescore(discount(c.box_score, c.lam, gamma, gamma_mode), c.keypoints, in_vis_thre)
  rows = np.arange(len(c)) if keep_lambda is None else np.flatnonzero(c.lam == keep_lambda)
  if nms == "none":
    key = np.zeros(len(rows), np.int64)
  else:
    num_lambdas = int(c.lam.max(initial=0)) + 1
    key = _block_keys(c.lam[rows], lambda_order or reference_lambda_order(num_lambdas))
  grouped, starts = _image_blocks(c.image_id, rows, key)
  args = (c.keypoints[grouped], c.area[grouped], scores[grouped], starts, sigmas, nms_threshold)
  if nms == "oks":
    grouped = grouped[oks_nms(*args)]
  elif nms == "soft_oks":
    grouped = grouped[soft_oks_nms(*args, max_dets=soft_max_dets)]
  elif nms != "none":
    raise ValueError(f"unknown nms {nms!r} (oks, soft_oks or none)")
  return Kept(grouped, scores[grouped])


def coco_results(candidates: Candidates, kept: Kept, category_id: int = 1) -> list[dict]:
  """Kept instances -> COCO keypoint results: ``image_id``, ``category_id``, ``keypoints``
  (K*3 floats x, y, maxval) and ``score``, in ``kept`` order."""
  kp = candidates.keypoints[kept.index, :, :3].astype(np.float64).reshape(
      len(kept.index), 3 * candidates.keypoints.shape[1])     # (0, -1) cannot be reshaped
  ids = candidates.image_id[kept.index].tolist()
  return [{"image_id": i, "category_id": category_id, "keypoints": k, "score": s}
          for i, k, s in zip(ids, kp.tolist(), kept.score.tolist())]
