"""The README's figure: one box shared by two people, the baseline's and MIPNet's poses.

    python scripts/make_readme_figure.py --mipnet runs/demo --baseline runs/cmp/baseline \\
        --out scripts/figures/shared_box.png

--mipnet is the README's first command's run (MIPNet, N=2); --baseline the N=1 run of
``scripts/compare_baseline.py --steps 1200 --batch 32`` (OUT/baseline): the same budget.
The image is picked from the synthetic set's ``synthetic_val_shared`` split as
``mipnet_jax.serve.showcase`` says (the first where MIPNet's two best poses are two different
people); the PNG is written with maximum compression and its size printed.
"""

from __future__ import annotations

import argparse
import os

import cv2

from mipnet_jax import experiments
from mipnet_jax.core.meta import joint_map
from mipnet_jax.data import inputs
from mipnet_jax.serve import showcase
from mipnet_jax.serve.predictor import Predictor


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mipnet", required=True, help="the MIPNet run or checkpoint")
  parser.add_argument("--baseline", required=True, help="the baseline (N=1) run or checkpoint")
  parser.add_argument("--data_root", default="data/synthetic")
  parser.add_argument("--out", default="scripts/figures/shared_box.png")
  args = parser.parse_args(argv)
  configs = {name: experiments.experiment("hrnet_w32", "synthetic", (256, 192), arg)
             for name, arg in (("baseline", "quick,baseline"), ("mipnet", "quick"))}
  for c in configs.values():
    c.data.root = args.data_root
  predictors = {name: Predictor.from_config(configs[name], path) for name, path in
                (("baseline", args.baseline), ("mipnet", args.mipnet))}
  split = "synthetic_val_shared"
  _, ann_path, image_dir = inputs.eval_files(configs["mipnet"], split)
  joints = joint_map(inputs.model_meta(configs["mipnet"]),
                     inputs.split_meta(configs["mipnet"], split))
  example = showcase.pick_shared_box_example(ann_path, image_dir, predictors, joints, "mipnet")
  figure = showcase.side_by_side(example, predictors, {
      "baseline": "baseline HRNet (N=1)", "mipnet": "MIPNet (N=2), merged"})
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  cv2.imwrite(args.out, figure[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
  print(f"{args.out}: image {example.image_id}, {os.path.getsize(args.out)} bytes; poses "
        f"baseline {len(example.poses['baseline'])}, MIPNet {len(example.poses['mipnet'])}; "
        f"two different people: {example.distinct}")


if __name__ == "__main__":
  main()
