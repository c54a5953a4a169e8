"""Post-processing time of a COCO-val-sized split, the reference loop and ours side by side on
one core, and a check that both keep the same instances with the same scores.

  python scripts/bench_postprocess.py [--images 5000] [--boxes-per-image 20.8]
      [--reference-images 0] [--nms oks soft_oks none] [--seed 0]

The workload is synthetic but shaped like COCO val with detection boxes and N = 2: images with
a varying number of boxes (mean ~20.8) around a few clusters of people, several detections per
person, keypoints near each box's person (λ = 0) and near its nearest neighbour (λ = 1, or the
box's own person when alone), a few candidates with every maxval below 0.2 (score 0, ties),
and the validation loop's row layout (per batch of 32 boxes: all λ = 1 rows, then all λ = 0).
Both run pinned to one core with single-threaded BLAS; ours is the best of 3 runs, the
reference one run. ``--reference-images K`` times the reference on a fixed random subset of K
images and scales per image (the output says so); 0 (default) runs it on every image. Prints a
table, then one JSON line (the ``oks`` row; ``identical`` covers every row).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
  os.environ[_var] = "1"

import argparse
import json
import sys
import time

import numpy as np

from mipnet_jax.eval import postprocess as pp
from mipnet_jax.core.meta import get_meta

# The test oracles (tests/oracles/): independent re-implementations of the references.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "oracles"))
import reference_postprocess

# A standing person in box-normalised (x, y), COCO joint order.
_TEMPLATE = np.array([
    [.50, .08], [.54, .06], [.46, .06], [.58, .08], [.42, .08], [.64, .22], [.36, .22],
    [.70, .38], [.30, .38], [.72, .52], [.28, .52], [.60, .55], [.40, .55], [.60, .75],
    [.40, .75], [.60, .95], [.40, .95]])
BATCH = 32


def _people(rng, num_people, image_wh=(640.0, 480.0)):
  """[P, 4] person boxes (x, y, w, h) around 1-3 clusters, [P, K, 2] their joints."""
  centres = rng.uniform(100, image_wh, size=(rng.integers(1, 4), 2))
  pos = centres[rng.integers(0, len(centres), num_people)] + rng.normal(0, 70, (num_people, 2))
  h = np.clip(rng.lognormal(np.log(150), 0.5, num_people), 40, 420)
  w = h * rng.uniform(0.35, 0.7, num_people)
  boxes = np.stack([pos[:, 0] - w / 2, pos[:, 1] - h / 2, w, h], 1)
  pose = _TEMPLATE + rng.normal(0, 0.04, (num_people, len(_TEMPLATE), 2))
  joints = boxes[:, None, :2] + pose * boxes[:, None, 2:]
  return boxes, joints


def _scale(boxes, input_hw=(256, 192), padding=1.25):
  """[B, 4] boxes -> [B, 2] float32 crop scales, as ``_xywh2cs``."""
  w, h = boxes[:, 2].copy(), boxes[:, 3].copy()
  aspect = input_hw[1] / input_hw[0]
  h = np.where(w > aspect * h, w / aspect, h)
  w = np.where(w < aspect * h, h * aspect, w)
  return np.stack([w / 200.0, h / 200.0], 1).astype(np.float32) * padding


def _image(rng, num_boxes):
  """One image's boxes: (joints λ=0 [B, K, 2], joints λ=1 [B, K, 2], scale [B, 2], score [B])."""
  num_people = max(1, round(num_boxes / rng.uniform(1.5, 3.0)))
  boxes, joints = _people(rng, num_people)
  owner = np.concatenate([np.arange(min(num_people, num_boxes)),
                          rng.integers(0, num_people, max(0, num_boxes - num_people))])
  centre = boxes[:, :2] + boxes[:, 2:] / 2
  dist = ((centre[:, None] - centre[None]) ** 2).sum(-1) + np.diag(np.full(num_people, np.inf))
  other = np.where(np.isfinite(dist.min(1)), dist.argmin(1), np.arange(num_people))
  size = boxes[owner, 3:4, None]
  det = boxes[owner] + rng.normal(0, 0.05, (num_boxes, 4)) * boxes[owner, 2:].repeat(2, 1)
  own = joints[owner] + rng.normal(0, 0.02, (num_boxes, 17, 2)) * size
  second = joints[other[owner]] + rng.normal(0, 0.03, (num_boxes, 17, 2)) * size
  return own, second, _scale(det), rng.beta(3, 1, num_boxes)


def _maxvals(rng, shape):
  vals = rng.uniform(0.3, 0.95, shape)
  vals = np.where(rng.random(shape) < 0.15, rng.uniform(0, 0.3, shape), vals)
  vals[rng.random(shape[0]) < 0.03] *= 0.2            # no joint above 0.2: score 0
  return vals


def make_workload(num_images=5000, boxes_per_image=20.8, seed=0) -> pp.Candidates:
  """A COCO-val-sized split of N = 2 candidates, in the validation loop's row layout."""
  rng = np.random.default_rng(seed)
  mean = boxes_per_image - 1
  counts = 1 + rng.negative_binomial(2, 2 / (2 + mean), num_images)
  parts = [_image(rng, int(n)) for n in counts]
  own, second, scale, score = (np.concatenate([p[i] for p in parts]) for i in range(4))
  image_id = np.repeat(np.arange(num_images) * 7 + 139, counts)
  blocks = []
  for a in range(0, len(score), BATCH):
    rows = np.arange(a, min(a + BATCH, len(score)))
    blocks += [(rows, 1), (rows, 0)]                  # lambda_val 0 (λ = 1) first, as the code
  rows = np.concatenate([r for r, _ in blocks])
  lam = np.concatenate([np.full(len(r), k) for r, k in blocks])
  xy = np.where((lam == 0)[:, None, None], own[rows], second[rows])
  kp = np.concatenate([xy, _maxvals(rng, (len(rows), 17))[..., None]], -1).astype(np.float32)
  return pp.Candidates(kp, score[rows], pp.padded_box_area(scale[rows]), image_id[rows], lam)


def run_reference(c: pp.Candidates, sigmas, nms, **kw):
  return reference_postprocess.reference_postprocess(
      c.keypoints, c.box_score, c.area, c.image_id, c.lam, sigmas, nms=nms, **kw)


def _subset(c: pp.Candidates, num_images: int, seed: int):
  ids = np.unique(c.image_id)
  if num_images <= 0 or num_images >= len(ids):
    return c, len(ids)
  pick = np.random.default_rng(seed + 1).choice(ids, num_images, replace=False)
  return c.take(np.flatnonzero(np.isin(c.image_id, pick))), num_images


def bench(c: pp.Candidates, nms: str, reference_images: int, seed: int, settings: dict,
          repeats: int = 3):
  """Ours on the whole split (best of ``repeats``), the reference once (on a subset if asked),
  and whether both keep the same rows with the same scores."""
  sigmas = get_meta("coco").sigmas
  ours = []
  for _ in range(repeats):
    start = time.perf_counter()
    kept = pp.postprocess(c, sigmas, nms=nms, **settings)
    ours.append(time.perf_counter() - start)
  sub, num_sub = _subset(c, reference_images, seed)
  start = time.perf_counter()
  rows, scores = run_reference(sub, sigmas, nms, **settings)
  ref = time.perf_counter() - start
  mine = kept if sub is c else pp.postprocess(sub, sigmas, nms=nms, **settings)
  identical = (np.array_equal(mine.index, np.array(rows, np.int64))
               and np.array_equal(mine.score, np.array(scores, np.float64)))
  num_images = len(np.unique(c.image_id))
  return {"nms": nms, "kept": len(kept.index), "ref_images": num_sub, "ref_measured_s": ref,
          "reference_s": ref * num_images / num_sub, "ours_s": min(ours),
          "identical": bool(identical)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=5000)
  parser.add_argument("--boxes-per-image", type=float, default=20.8)
  parser.add_argument("--reference-images", type=int, default=0)
  parser.add_argument("--nms", nargs="+", default=["oks", "soft_oks", "none"])
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  c = make_workload(args.images, args.boxes_per_image, args.seed)
  settings = {"gamma": 0.9, "gamma_mode": "power", "in_vis_thre": 0.2, "nms_threshold": 0.9}
  boxes = int((c.lam == 0).sum())
  print(f"workload: {args.images} images, {boxes} boxes, {len(c)} candidates (N=2), "
        f"max {np.bincount(np.unique(c.image_id, return_inverse=True)[1]).max()} per image; "
        "one core")
  results = [bench(c, nms, args.reference_images, args.seed, settings) for nms in args.nms]
  print(f"{'nms':<9}{'kept':>8}{'reference s':>13}{'ms/image':>10}{'ours s':>9}"
        f"{'ms/image':>10}{'speedup':>9}  identical")
  for r in results:
    note = "" if r["ref_images"] == args.images else f"  (reference timed on {r['ref_images']} " \
        f"random images: {r['ref_measured_s']:.2f} s, scaled per image)"
    print(f"{r['nms']:<9}{r['kept']:>8}{r['reference_s']:>13.2f}"
          f"{1e3 * r['reference_s'] / args.images:>10.3f}{r['ours_s']:>9.3f}"
          f"{1e3 * r['ours_s'] / args.images:>10.3f}{r['reference_s'] / r['ours_s']:>8.1f}x"
          f"  {r['identical']}{note}")
  main_row = next((r for r in results if r["nms"] == "oks"), results[0])
  print(json.dumps({"images": args.images, "candidates": len(c),
                    "reference_s": round(main_row["reference_s"], 3),
                    "ours_s": round(main_row["ours_s"], 4),
                    "speedup": round(main_row["reference_s"] / main_row["ours_s"], 1),
                    "identical": all(r["identical"] for r in results),
                    "reference_scaled_from_images": main_row["ref_images"]}))


if __name__ == "__main__":
  main()
