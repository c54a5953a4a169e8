"""Evaluates a COCO-format keypoint results file with its dataset's protocol.

  python scripts/eval_results.py --dataset crowdpose --annotations A.json --results R.json
  python scripts/eval_results.py --dataset ocpose --keypoints limbs --area_rule box_0.53 \
      --annotations ocpose_test.json --results R.json

coco / ochuman / synthetic: the COCO keypoint protocol (pycocotools): AP, AP50, AP75, APM,
APL, AR, AR50, AR75, ARM, ARL. crowdpose: the official CrowdPose protocol: AP, AP50, AP75, AR,
AR50, AR75, AP_easy, AP_medium, AP_hard. Another dataset: ``--keypoints`` declares the
file's joints (comma names with known sigmas, or ``limbs``); ``--joints`` scores a subset of
them (results then hold just those); ``--metric`` and ``--area_rule`` as an evaluation split's
(README, Evaluation). Prints a table, then, as the LAST stdout line,
exactly one JSON object {metric: value}; -1 means "no ground truth for this metric".
Bad input: exit code 2 and one line on stderr naming the file, the entry and the field.
pycocotools' own printing goes to stderr with --verbose, otherwise nowhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from mipnet_jax.core.meta import build_meta, expand_joints, get_meta, joint_map
from mipnet_jax.eval.metrics import AREA_RULES, METRICS, evaluate_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", required=True,
                      help="a built-in dataset (coco, crowdpose, ochuman, synthetic), or any "
                           "name with --keypoints")
  parser.add_argument("--keypoints", default="",
                      help="the file's joints: comma names (known sigmas) or 'limbs'")
  parser.add_argument("--joints", default="", help="score only these joints ('limbs', names)")
  parser.add_argument("--metric", default="", choices=("",) + tuple(METRICS))
  parser.add_argument("--area_rule", default="", choices=("",) + AREA_RULES)
  parser.add_argument("--annotations", required=True, help="ground-truth COCO-format JSON")
  parser.add_argument("--results", required=True, help="COCO keypoint results JSON (a list)")
  parser.add_argument("--verbose", action="store_true",
                      help="show pycocotools' own output (on stderr)")
  return parser.parse_args(argv)


def format_table(metrics: dict[str, float]) -> str:
  """One 'name  value' row per metric."""
  width = max(len(name) for name in metrics)
  rows = [f"{'metric':<{width}}  value"]
  rows += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
  return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                      format="%(levelname)s: %(message)s")
  try:
    if args.keypoints:
      meta = build_meta(args.dataset, expand_joints(args.keypoints), where="--keypoints")
    else:
      meta = get_meta(args.dataset)
    joints = joint_map(meta, meta, args.joints) if args.joints else None
    metrics = evaluate_file(meta, args.annotations, args.results, verbose=args.verbose,
                            metric=args.metric, joints=joints, area_rule=args.area_rule)
  except ValueError as e:           # ResultsError, AnnotationError, MetaError, bad dataset
    print(f"{os.path.basename(__file__)}: error: {e}", file=sys.stderr)
    return 2
  print(f"{args.dataset}: {args.results}")
  print(format_table(metrics))
  print(json.dumps(metrics))
  return 0


if __name__ == "__main__":
  sys.exit(main())
