"""Baseline (N=1) vs MIPNet (N=2) trained with the same budget on the synthetic crowd set.

    python scripts/compare_baseline.py --out /tmp/cmp --steps 2000 --batch 8
    python scripts/compare_baseline.py --out /tmp/cmp --steps 10 --batch 8 --data_root /tmp/syn3

Both runs use the quick synthetic config of ``--arch`` (default HRNet-W32:
``experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")``, plus ``baseline``
for N=1; ``--arch=vitpose_b`` compares MIPNet-ViT with ViTPose): same steps, batch, seed and
data, differing only in num_instances. Each trains in its own process with
``main.train(config, workdir, with_eval=True)`` (what ``--mode=train_and_eval`` runs) in
OUT/baseline and OUT/mipnet (deleted first: every comparison starts fresh), evaluating on
synthetic_val, synthetic_val_pairs (the images of occluding pairs) and the same pairs
annotated OCPose-style, both people sharing one relaxed box (synthetic_val_shared) or with
tight boxes of their joints (synthetic_val_shared_tight). Writes to OUT:
  comparison.md / comparison.json  AP, AP50, AR per split: baseline, MIPNet merged over
                                   lambda, MIPNet lambda=0 only (baseline-style);
  learning_curves.png              training loss and eval AP vs step of both runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

RUNS = {"baseline": "quick,baseline", "mipnet": "quick"}
FAMILY_LABELS = {"hrnet": "HRNet", "simple_baseline": "SimpleBaseline", "vitpose": "ViTPose"}
ARCH_LABELS = {"hrnet_w32": "HRNet-W32", "hrnet_w48": "HRNet-W48", "sbl_r50": "SBL R-50",
               "sbl_r101": "SBL R-101", "sbl_r152": "SBL R-152", "vitpose_s": "ViTPose-S",
               "vitpose_b": "ViTPose-B", "vitpose_l": "ViTPose-L", "vitpose_h": "ViTPose-H"}
SPLITS = ("synthetic_val", "synthetic_val_pairs", "synthetic_val_shared",
          "synthetic_val_shared_tight")
COLUMNS = ("AP", "AP50", "AR")


def make_config(a, run: str):
  from mipnet_jax import experiments
  c = experiments.experiment(a.arch, "synthetic", (256, 192), RUNS[run])
  c.seed = a.seed
  c.data.root = a.data_root
  c.data.batch_size = a.batch
  c.train.total_steps = a.steps
  c.train.log_every_steps = max(1, min(a.log_every, a.steps))
  with c.ignore_type():                   # the config's field is an int; allow fractions
    c.train.eval_every_epochs = a.eval_every_epochs
  c.eval.splits = ",".join(s for s in SPLITS if s in c.eval_data)
  if a.num_train:
    c.data.synthetic.num_train = a.num_train
  if a.num_val:
    c.data.synthetic.num_val = a.num_val
  return c


def worker(a) -> None:
  """Trains one run in this process, evaluating as ``--mode=train_and_eval`` does; writes
  WORKDIR/summary.json."""
  from mipnet_jax.core import runtime
  from mipnet_jax import experiments
  # before the first JAX computation
  runtime.configure_cpu_xla(experiments.ARCHS[a.arch]["name"])
  from mipnet_jax import main as mipnet_main
  config = make_config(a, a.worker)
  workdir = os.path.join(a.out, a.worker)
  done = mipnet_main.train(config, workdir, with_eval=True)
  results = {r.protocol.split: {"metrics": r.metrics, "metrics_lambda0": r.metrics_lambda0}
             for r in done.evals}
  summary = {"run": a.worker, "family": config.model.name,
             "num_instances": config.num_instances, "step": done.step,
             "elapsed": done.elapsed, "evals": results}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(done.summary())


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def comparison_rows(summaries: dict) -> list[dict]:
  """One row per (run, mode): {"model", "N", split: {AP, AP50, AR}}."""
  rows = []
  for s in summaries.values():
    modes = [("metrics", "merged")] + ([("metrics_lambda0", "lambda=0 only")]
                                       if s["num_instances"] > 1 else [])
    for key, mode in modes:
      family = FAMILY_LABELS[s.get("family", "hrnet")]
      name = f"baseline ({family})" if s["num_instances"] == 1 else f"MIPNet, {mode}"
      row = {"model": name, "N": s["num_instances"]}
      for split in SPLITS:
        m = (s["evals"].get(split) or {}).get(key) or {}
        row[split] = {c: m.get(c) for c in COLUMNS}
      rows.append(row)
  return rows


def markdown(rows: list[dict], a) -> str:
  head = ["model", "N"] + [f"{split} {c}" for split in SPLITS for c in COLUMNS]
  fmt = lambda v: "-" if v is None else f"{v:.4f}"
  title = (f"Synthetic crowd, {ARCH_LABELS[a.arch]} quick, {a.steps} steps x batch {a.batch}, seed "
           f"{a.seed}, data {a.data_root}")
  lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["model"], str(r["N"])] + [fmt(r[s][c]) for s in SPLITS for c in COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(out: str) -> str:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4))
  for run, color in (("baseline", "tab:blue"), ("mipnet", "tab:red")):
    lines = read_jsonl(os.path.join(out, run, "metrics.jsonl"))
    loss = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    if loss:
      ax_loss.plot(*zip(*loss), color=color, marker=".", label=run)
    for split, style in zip(SPLITS, ("-", "--")):
      for key, suffix, mk in ((f"{split}/AP", "", "o"), (f"{split}/AP_lambda0", " lambda=0", "x")):
        pts = [(r["step"], r[key]) for r in lines if key in r]
        if pts:
          ax_ap.plot(*zip(*pts), color=color, linestyle=style, marker=mk,
                     label=f"{run} {split}{suffix}")
  ax_loss.set(xlabel="step", ylabel="training loss (JointsMSE)", title="training loss")
  ax_ap.set(xlabel="step", ylabel="AP", title="eval AP")
  for ax in (ax_loss, ax_ap):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(out, "learning_curves.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--arch", default="hrnet_w32", choices=tuple(ARCH_LABELS),
                 help="architecture preset (experiments.ARCHS), at its quick widths")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--eval_every_epochs", type=float, default=1.0)
  p.add_argument("--log_every", type=int, default=10, help="train.log_every_steps")
  p.add_argument("--data_root", default="data/synthetic")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--num_train", type=int, default=0, help="synthetic train images (0: config)")
  p.add_argument("--num_val", type=int, default=0, help="synthetic val images (0: config)")
  p.add_argument("--worker", choices=tuple(RUNS), help=argparse.SUPPRESS)
  a = p.parse_args()
  a.out, a.data_root = os.path.abspath(a.out), os.path.abspath(a.data_root)
  if a.worker:
    worker(a)
    return
  summaries = {}
  for run in RUNS:
    workdir = os.path.join(a.out, run)
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    argv = [sys.executable, os.path.abspath(__file__), f"--worker={run}"] + [
        f"--{k}={getattr(a, k)}" for k in ("out", "arch", "steps", "batch", "eval_every_epochs",
                                           "log_every", "data_root", "seed", "num_train",
                                           "num_val")]
    print(f"training {run} ({a.steps} steps, batch {a.batch}); log: {workdir}/log.txt",
          flush=True)
    with open(os.path.join(workdir, "log.txt"), "w") as log:
      done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
      with open(os.path.join(workdir, "log.txt")) as f:
        sys.exit(f"{run} failed:\n{f.read()[-3000:]}")
    with open(os.path.join(workdir, "summary.json")) as f:
      summaries[run] = json.load(f)
  rows = comparison_rows(summaries)
  table = markdown(rows, a)
  with open(os.path.join(a.out, "comparison.md"), "w") as f:
    f.write(table)
  with open(os.path.join(a.out, "comparison.json"), "w") as f:
    json.dump({"steps": a.steps, "batch": a.batch, "seed": a.seed, "data_root": a.data_root,
               "rows": rows, "runs": summaries}, f, indent=1)
  png = plot(a.out)
  print(table + f"\nwrote {a.out}/comparison.md, comparison.json, {os.path.basename(png)}")


if __name__ == "__main__":
  main()
