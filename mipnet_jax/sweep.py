"""The detector-confidence sweep (supplementary Figures 5 and 6): AP of each model when only
detections scoring at least t are used, for a range of t, from saved candidates (no network).

  python scripts/confidence_sweep.py --dataset coco --annotations A.json \
      --candidates baseline=B.npz --candidates mipnet=M.npz --out DIR
"""

from __future__ import annotations

import json
import os

import numpy as np
from matplotlib.figure import Figure

from mipnet_jax import evaluate


def run_sweep(models: dict, thresholds) -> list[dict]:
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
