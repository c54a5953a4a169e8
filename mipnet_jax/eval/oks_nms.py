"""OKS and greedy / soft OKS-NMS over a whole split, bit-identical to the reference.

[HR] ``nms.py``: ``oks_iou`` with all joints (the reference's NMS ``in_vis_thre`` is None; its
branch is buggy: ``list(a) and list(b)`` is ``list(b)``), greedy ``oks_nms`` (order =
scores.argsort()[::-1] per image, so ties resolve as that very call does; keep the top, drop
the remaining with OKS > thr; OKS <= thr stays, a NaN OKS drops; repeat) and ``soft_oks_nms``.
Candidates arrive grouped by image (``starts`` [I + 1] delimits image i's rows). An exact
prefilter drops the pairs whose OKS cannot exceed thr, and the greedy pass runs in rounds on
the others, computing an OKS only between a kept and an undecided candidate, with the
reference's float operations (mipnet_jax/postprocess.py runs the whole post-processing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_PREFILTER_GROUPS = 3          # keypoint groups of the exact OKS-NMS prefilter
_PREFILTER_CELLS = 1 << 17     # pair cells per vectorised prefilter chunk
_SOFT_CELLS = 1 << 19          # B x n^2 per vectorised soft-NMS chunk


def oks(kp_g: np.ndarray, kp_d: np.ndarray, area_g: np.ndarray, area_d: np.ndarray,
        sigmas: Sequence[float]) -> np.ndarray:
  """OKS as the reference's ``oks_iou`` (all joints), same float operations.

  kp_g, kp_d: [..., K, >=2] (x, y, ...) broadcastable; area_g, area_d: [...] -> [...] float64.
  e_k = (dx^2 + dy^2) / (2σ_k)^2 / ((a_g + a_d)/2 + eps) / 2; OKS = mean_k exp(-e_k).
  """
  variances = (np.asarray(sigmas, np.float64) * 2) ** 2
  return _oks_xy(kp_g[..., 0], kp_g[..., 1], kp_d[..., 0], kp_d[..., 1], np.asarray(area_g),
                 np.asarray(area_d), variances)


def _oks_xy(xg, yg, xd, yd, area_g, area_d, variances) -> np.ndarray:
  """``oks`` on coordinates [..., K] and areas [...] -> [...]."""
  dx = xd - xg
  dy = yd - yg
  e = (dx ** 2 + dy ** 2) / variances / ((area_g + area_d) / 2 + np.spacing(1))[..., None] / 2
  return np.sum(np.exp(-e), axis=-1) / e.shape[-1]


def _descending(scores: np.ndarray, starts: np.ndarray) -> np.ndarray:
  """Per image ``scores[a:b].argsort()[::-1] + a`` (the reference's own call, for its ties)."""
  return np.concatenate([np.zeros(0, np.int64)] + [
      scores[a:b].argsort()[::-1] + a for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())])


def _prefilter(x: np.ndarray, y: np.ndarray, sigmas: np.ndarray, threshold: float):
  """The exact NMS's prefilter: x, y [M, K] -> (cx [G, M], cy [G, M], coef), or None.

  If OKS > t then Σ_k (1 - exp(-e_k)) < K(1 - t), so one of G keypoint groups has every
  e_k < T = -ln(1 - K(1 - t)/G), hence |Δc_g| <= mean_g d_k < 2 σ̄_g sqrt(2 T s) for its
  centroids c_g. With centroids divided by 2 σ̄_g, a pair is far (OKS <= t) when every group
  has |Δc|^2 >= coef * s, coef = 2T. The margins (1e-9, 1e-12, 1e-3) cover float32 keypoints
  and the rounding of exp and of the sums; NaN centroids never count as far. None: t too low
  for any bound (every pair is checked).
  """
  num_k = x.shape[1]
  groups = np.array_split(np.arange(num_k), min(_PREFILTER_GROUPS, num_k))
  rho = (num_k * (1.0 - threshold) + 1e-9) / len(groups)
  if rho >= 1.0:
    return None
  t_max = max(-math.log((1.0 - rho) * (1.0 - 1e-12)), 0.0) * (1.0 + 1e-3)
  weights = np.zeros((num_k, len(groups)))
  for g, idx in enumerate(groups):
    weights[idx, g] = 1.0 / (len(idx) * 2.0 * sigmas[idx].mean())
  cx, cy = ((v.astype(np.float64) @ weights).T.copy() for v in (x, y))
  return cx, cy, 2.0 * t_max


def _chunks(counts: np.ndarray, min_count: int, cells: int):
  """Images (indices into counts) with >= min_count candidates, ascending size, in chunks of
  at most ``cells`` cells of B x n_max^2."""
  images = np.argsort(counts, kind="stable")
  images = images[counts[images] >= min_count]
  start = 0
  while start < len(images):
    n = counts[images[start:]]
    cost = np.arange(1, len(n) + 1) * n.astype(np.int64) ** 2
    end = start + max(1, int(np.searchsorted(cost, cells, side="right")))
    yield images[start:end]
    start = end


def _padded(starts: np.ndarray, images: np.ndarray, n: int):
  """Rows of ``images``' candidates padded to n: (pos [B, n], valid [B, n])."""
  counts = starts[images + 1] - starts[images]
  pos = starts[images][:, None] + np.arange(n)
  valid = np.arange(n) < counts[:, None]
  return np.where(valid, pos, starts[images][:, None]), valid


def _nearest_group(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
  """cx, cy [G, B, n] scaled group centroids -> [B, n, n] min over the groups of |Δc|^2
  (NaN propagates: a NaN centroid is never far)."""
  shape = cx.shape[1:] + cx.shape[-1:]
  d2, dx, dy = np.empty(shape), np.empty(shape), np.empty(shape)
  for g in range(len(cx)):
    np.subtract(cx[g][:, :, None], cx[g][:, None, :], out=dx)
    np.subtract(cy[g][:, :, None], cy[g][:, None, :], out=dy)
    np.multiply(dx, dx, out=dx)
    np.multiply(dy, dy, out=dy)
    np.add(dx, dy, out=d2 if g == 0 else dx)
    if g:
      np.minimum(d2, dx, out=d2)
  return d2


def _candidate_pairs(bound, area: np.ndarray, starts: np.ndarray):
  """Same-image pairs (src < dst, positions in rank order) whose OKS may exceed the threshold:
  bound from ``_prefilter`` (None: every pair), area [M] -> (src [P], dst [P])."""
  counts = np.diff(starts)
  src, dst = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for images in _chunks(counts, 2, _PREFILTER_CELLS):
    n = int(counts[images[-1]])
    pos, valid = _padded(starts, images, n)
    close = np.triu(np.ones((n, n), bool), 1) & valid[:, None, :]
    if bound is not None:
      half = np.take(area, pos) * (bound[2] / 2) + bound[2] * np.spacing(1)
      reach = half[:, :, None] + half[:, None, :]    # >= coef * s, s = (a_g + a_d)/2 + eps
      d2 = _nearest_group(np.take(bound[0], pos, 1), np.take(bound[1], pos, 1))
      close &= ~(d2 >= reach)
    b, i, j = np.nonzero(close)
    src.append(pos[b, i])
    dst.append(pos[b, j])
  return np.concatenate(src), np.concatenate(dst)


def _pair_oks(x: np.ndarray, y: np.ndarray, area: np.ndarray, variances: np.ndarray,
              chunk: int = 1 << 13):
  """Candidates x, y [M, K], area [M] -> overlap(src [P], dst [P]) -> [P] OKS (g = src)."""
  def overlap(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    out = np.empty(len(src))
    for a in range(0, len(src), chunk):
      g, d = src[a:a + chunk], dst[a:a + chunk]
      out[a:a + chunk] = _oks_xy(np.take(x, g, 0), np.take(y, g, 0), np.take(x, d, 0),
                                 np.take(y, d, 0), area[g], area[d], variances)
    return out
  return overlap


def _greedy_keep(num: int, src: np.ndarray, dst: np.ndarray, overlap, threshold: float):
  """Greedy NMS over candidate edges src -> dst (src ranked first) -> [num] bool kept.

  A node is dropped iff a kept node has an edge to it with not(overlap <= threshold). Rounds
  resolve the nodes with no undecided source; only edges from kept sources to undecided nodes
  get their overlap computed, as the reference only compares kept with remaining candidates.
  """
  state = np.zeros(num, np.int8)               # 0 undecided, 1 kept, -1 dropped
  targeted = np.zeros(num, bool)
  targeted[dst] = True
  state[~targeted] = 1
  while len(src):
    ready = state[src] == 1
    hit = ~(overlap(src[ready], dst[ready]) <= threshold)   # NaN OKS drops, as the reference
    state[dst[ready][hit]] = -1
    live = ~ready & (state[src] != -1) & (state[dst] == 0)
    src, dst = src[live], dst[live]
    blocked = np.zeros(num, bool)
    blocked[dst] = True
    state[(state == 0) & ~blocked] = 1
  return state == 1


def oks_nms(keypoints: np.ndarray, area: np.ndarray, scores: np.ndarray, starts: np.ndarray,
            sigmas: Sequence[float], threshold: float = 0.9, prefilter: bool = True) -> np.ndarray:
  """Greedy OKS-NMS of every image at once, with the reference ``oks_nms``'s results.

  keypoints [M, K, >=2], area [M], scores [M]: image i is rows starts[i]:starts[i + 1] [I + 1],
  in the order the reference lists them. Returns [R] kept rows, image by image, each image's
  in keep (descending score) order. Candidates are dropped when OKS > threshold. The
  ``prefilter`` (exact, see ``_prefilter``) skips the OKS of pairs that cannot exceed it.
  """
  order = _descending(scores, starts)
  x, y = (np.take(keypoints[..., i], order, 0) for i in (0, 1))
  ar = area[order]
  sig = np.asarray(sigmas, np.float64)
  bound = _prefilter(x, y, sig, threshold) if prefilter else None
  src, dst = _candidate_pairs(bound, ar, starts)
  overlap = _pair_oks(x, y, ar, (sig * 2) ** 2)
  return order[_greedy_keep(len(order), src, dst, overlap, threshold)]


def _soft_nms_image(x, y, area, scores, variances, threshold: float, max_dets: int):
  """The reference ``soft_oks_nms`` on one image (x, y [n, K], area [n], scores [n]) ->
  [<= max_dets] rows in pick order, rescoring s * exp(-oks^2 / threshold) after each pick."""
  table = _oks_xy(x[:, None], y[:, None], x[None], y[None], area[:, None], area[None], variances)
  order = scores.argsort()[::-1]
  scores = scores[order]
  keep = []
  while order.size > 0 and len(keep) < max_dets:
    i = order[0]
    overlap = table[i, order[1:]]
    order = order[1:]
    scores = scores[1:] * np.exp(-overlap ** 2 / threshold)
    tmp = scores.argsort()[::-1]
    order, scores = order[tmp], scores[tmp]
    keep.append(i)
  return np.array(keep, np.int64)


def _soft_nms_rounds(x, y, area, scores, pos, alive, variances, threshold: float, max_dets: int):
  """Soft-NMS of B images at once, pick by pick: candidates at rows pos [B, n] where alive
  [B, n] -> (picks [B, max_dets] rows or -1, redo [B] bool). An image whose pick met a tie or a
  NaN/-inf score is marked redo: the reference's argsort, not argmax, decides it."""
  b = np.arange(len(pos))
  s, ar = scores[pos], area[pos]
  xs, ys = np.take(x, pos, 0), np.take(y, pos, 0)
  picks = np.full((len(pos), max_dets), -1)
  redo = np.zeros(len(pos), bool)
  for r in range(min(max_dets, pos.shape[1])):
    cur = np.where(alive, s, -np.inf)
    j = cur.argmax(1)
    odd = ((cur == cur[b, j][:, None]) & alive).sum(1) > 1
    redo |= alive.any(1) & (odd | ((np.isnan(s) | (s == -np.inf)) & alive).any(1))
    live = alive[b, j]
    picks[live, r] = pos[b, j][live]
    alive[b, j] = False
    overlap = _oks_xy(xs[b, j][:, None], ys[b, j][:, None], xs, ys, ar[b, j][:, None], ar,
                      variances)
    s = s * np.exp(-overlap ** 2 / threshold)
  return picks, redo


def soft_oks_nms(keypoints: np.ndarray, area: np.ndarray, scores: np.ndarray, starts: np.ndarray,
                 sigmas: Sequence[float], threshold: float = 0.9, max_dets: int = 20) -> np.ndarray:
  """The reference ``soft_oks_nms`` per image (arguments as ``oks_nms``) -> [R] kept rows.

  Like the reference it returns kept rows only, at most ``max_dets`` (20) per image in pick
  order: the decayed scores only order the picks; the kept rows keep their undecayed score.
  Images are run together; one whose pick meets a tie reruns the reference's loop.
  """
  variances = (np.asarray(sigmas, np.float64) * 2) ** 2
  x, y = np.ascontiguousarray(keypoints[..., 0]), np.ascontiguousarray(keypoints[..., 1])
  counts = np.diff(starts)
  picks = np.full((len(counts), max_dets), -1)
  for images in _chunks(counts, 1, _SOFT_CELLS):
    pos, alive = _padded(starts, images, int(counts[images[-1]]))
    picks[images], redo = _soft_nms_rounds(x, y, area, scores, pos, alive, variances,
                                           threshold, max_dets)
    for i in images[redo].tolist():
      a, b = starts[i], starts[i + 1]
      kept = a + _soft_nms_image(x[a:b], y[a:b], area[a:b], scores[a:b], variances, threshold,
                                 max_dets)
      picks[i] = np.pad(kept, (0, max_dets - len(kept)), constant_values=-1)
  return picks[picks >= 0]
