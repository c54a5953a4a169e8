"""AP versus the detector's minimum box confidence for saved evaluation candidates (the
``candidates_*.npz`` files of ``--mode=eval`` with ``eval.boxes=detections``), several models
side by side: a table, a JSON file and a PNG (supplementary Figures 5 and 6).

  python scripts/confidence_sweep.py --dataset coco --annotations person_keypoints_val2017.json \
      --candidates HRNet=runs/hrnet/eval/candidates_coco_val_det0_N1_merged.npz \
      --candidates MIPNet=runs/mipnet/eval/candidates_coco_val_det0_N2_merged.npz --out sweep/
"""

from __future__ import annotations

import argparse

from mipnet_jax.core.meta import get_meta, joint_map
from mipnet_jax.eval import sweep
from mipnet_jax.eval.candidates import load_candidates
from mipnet_jax.eval.metrics import METRICS, default_metric
from mipnet_jax.eval.postprocess import PostprocessSpec
from mipnet_jax.eval.protocol import Protocol
from mipnet_jax.experiments import SWEEP_THRESHOLDS


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", required=True, choices=("coco", "ochuman", "crowdpose",
                                                           "synthetic"))
  parser.add_argument("--annotations", required=True)
  parser.add_argument("--candidates", action="append", required=True, metavar="NAME=NPZ")
  parser.add_argument("--thresholds", type=float, nargs="+", default=SWEEP_THRESHOLDS)
  parser.add_argument("--gamma", type=float, default=0.9)
  parser.add_argument("--gamma_mode", default="power", choices=("power", "constant"))
  parser.add_argument("--nms", default=None, choices=("oks", "soft_oks", "none"),
                      help="default: none for crowdpose (its reference), else oks")
  parser.add_argument("--nms_threshold", type=float, default=0.9)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()

  models = {}
  for item in args.candidates:
    name, sep, path = item.partition("=")
    if not sep:
      parser.error(f"--candidates takes NAME=PATH, got {item!r}")
    candidates = load_candidates(path)
    spec = PostprocessSpec(
        gamma=args.gamma, gamma_mode=args.gamma_mode, in_vis_thre=0.2,
        nms=args.nms or ("none" if args.dataset == "crowdpose" else "oks"),
        nms_threshold=args.nms_threshold, keep_lambda=None, min_box_score=0.0)
    meta, metric = get_meta(args.dataset), default_metric(args.dataset)
    protocol = Protocol(
        split=args.dataset, dataset=args.dataset, annotations=args.annotations,
        boxes="detections", det_file="", num_instances=int(candidates.lam.max(initial=0)) + 1,
        flip=True, decode="quarter", input_hw=(0, 0), weights=path, metric=metric,
        area_rule=METRICS[metric].default_area_rule, joints=joint_map(meta, meta), meta=meta,
        postprocess=spec)
    models[name] = (candidates, protocol)
  rows = sweep.sweep_rows(models, args.thresholds)
  title = f"{args.dataset}: AP vs detector confidence"
  paths = sweep.write_sweep(rows, list(models), args.out, title)
  print(title + "\n" + sweep.format_sweep(rows, list(models)))
  print(f"wrote {paths['txt']}, {paths['json']}, {paths['png']}")


if __name__ == "__main__":
  main()
