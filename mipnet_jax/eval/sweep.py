"""The detector-confidence sweep (supplementary Figures 5 and 6): AP of each model when only
detections scoring at least t are used, for a range of t, from candidates (no network).

``--mode=sweep`` (``run_sweep``) evaluates the MIPNet model (``eval.checkpoint``) and the N=1
baseline (``eval.baseline_checkpoint``) once on the first split's detection boxes, then
re-scores the saved candidates at every threshold of ``eval.sweep_thresholds``; the table,
JSON and PNG go to WORKDIR/eval/sweep_<split>. From saved candidates alone:

  python scripts/confidence_sweep.py --dataset coco --annotations A.json \
      --candidates baseline=B.npz --candidates mipnet=M.npz --out DIR
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from matplotlib.figure import Figure

from mipnet_jax.data import inputs
from mipnet_jax.eval import run as evaluate
from mipnet_jax.eval.protocol import make_protocol, split_names
from mipnet_jax.models.load import load_model


def sweep_rows(models: dict, thresholds) -> list[dict]:
  """models: {name: (Candidates, Protocol)} of detections scored at any confidence.
  Returns one row per threshold: {"threshold", "<name>": AP, "<name>_boxes": boxes kept}."""
  rows = []
  for t in thresholds:
    row = {"threshold": float(t)}
    for name, (candidates, protocol) in models.items():
      results = evaluate.score_candidates(candidates, protocol, min_box_score=float(t))
      row[name] = evaluate.compute_metrics(results, protocol)["AP"]
      row[f"{name}_boxes"] = int(np.sum(candidates.box_score[candidates.lam == 0] >= t))
    rows.append(row)
  return rows


def format_sweep(rows: list[dict], names: list[str]) -> str:
  head = f"{'min score':>9}  " + "  ".join(f"{n:>10} {'boxes':>7}" for n in names)
  lines = [head] + [f"{r['threshold']:9.2f}  " + "  ".join(
      f"{r[n]:10.4f} {r[n + '_boxes']:7d}" for n in names) for r in rows]
  return "\n".join(lines)


def plot_sweep(rows: list[dict], names: list[str], path: str, title: str) -> None:
  """AP versus minimum detector confidence, one line per model, as a PNG."""
  # A Figure of its own (no pyplot): no global backend switch, so notebooks keep inline plots.
  fig = Figure(figsize=(5.5, 3.8), dpi=120)
  ax = fig.subplots()
  ts = [r["threshold"] for r in rows]
  for name in names:
    ax.plot(ts, [100 * r[name] for r in rows], marker="o", label=name)
  ax.set_xlabel("minimum detector box confidence")
  ax.set_ylabel("AP (%)")
  ax.set_title(title.replace(": ", ":\n", 1), fontsize=9)
  ax.set_ylim(bottom=0)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)


def write_sweep(rows: list[dict], names: list[str], out_dir: str, title: str) -> dict:
  """Writes sweep.txt, sweep.json and sweep.png under ``out_dir``; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f"sweep.{k}") for k in ("txt", "json", "png")}
  with open(paths["txt"], "w") as f:
    f.write(title + "\n" + format_sweep(rows, names) + "\n")
  with open(paths["json"], "w") as f:
    json.dump(dict(title=title, rows=rows), f, indent=1)
  plot_sweep(rows, names, paths["png"], title)
  return paths


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """The sweep of ``--mode=sweep``: one row per threshold, the files written."""

  title: str
  names: tuple[str, ...]
  rows: list[dict]
  paths: dict[str, str]

  def summary(self) -> str:
    """The title, the table, then one JSON line (rows, PNG)."""
    return (f"{self.title}\n{format_sweep(self.rows, list(self.names))}\n"
            + json.dumps(dict(rows=self.rows, png=self.paths["png"])))


def run_sweep(config, workdir: str, show_progress: bool = True) -> SweepResult:
  """``--mode=sweep``: baseline (N=1) and MIPNet over the detector-confidence thresholds on
  the first split of ``config.eval.splits``."""
  split = split_names(config)[0]
  det = config.eval_data[split].det_file
  if not det:
    raise ValueError(f"sweep: config.eval_data.{split}.det_file is empty (the sweep filters "
                     f"detector boxes by confidence)")
  out_dir = os.path.join(workdir, "eval", f"sweep_{split}")
  models = {}
  for name, n, checkpoint in (("baseline", 1, config.eval.baseline_checkpoint),
                              ("mipnet", config.num_instances, config.eval.checkpoint)):
    loaded = load_model(config, n, checkpoint)
    protocol = dataclasses.replace(
        make_protocol(config, split, loaded.weights), boxes="detections", num_instances=n,
        det_file=os.path.join(inputs.eval_root(config, split), det)
    ).with_postprocess(min_box_score=0.0, keep_lambda=None)
    done = evaluate.evaluate_split(config, loaded, protocol, os.path.join(out_dir, name),
                                   show_progress)
    models[name] = (done.candidates, protocol)
  rows = sweep_rows(models, config.eval.sweep_thresholds)
  title = f"{config.experiment}: {split}, AP vs detector confidence"
  return SweepResult(title, tuple(models), rows, write_sweep(rows, list(models), out_dir, title))
