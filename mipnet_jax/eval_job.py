"""The ``eval`` and ``sweep`` modes of ``python -m mipnet_jax.main`` (files under WORKDIR/eval).

eval   every split of ``config.eval.splits`` with the protocol of ``config.eval``.
sweep  the first split with its detection file, for the MIPNet model (``eval.checkpoint``)
       and the N=1 baseline (``eval.baseline_checkpoint``) side by side: AP versus the
       detector's minimum box confidence (``eval.sweep_thresholds``) as a table and a PNG.
"""

from __future__ import annotations

import dataclasses
import os

from mipnet_jax import checkpoints, evaluate, sweep
from mipnet_jax.data import inputs


def split_names(config) -> list[str]:
  """``config.eval.splits`` ("coco_val,ochuman_val") as a list of names."""
  names = [s.strip() for s in str(config.eval.splits).split(",") if s.strip()]
  if not names:
    raise ValueError("config.eval.splits names no split (e.g. --config.eval.splits=coco_val)")
  return names


def resolve_checkpoint(config, workdir: str | None) -> str:
  """The weights eval, export and predict use: ``config.eval.checkpoint``, else the newest
  checkpoint of ``workdir`` (if any), else "" (freshly initialised weights)."""
  if config.eval.checkpoint:
    return config.eval.checkpoint
  if workdir and checkpoints.training_checkpoint(os.path.abspath(workdir)):
    return workdir                                # the run's own newest checkpoint
  return ""


def run_eval(config, workdir: str, show_progress: bool = True) -> list[dict]:
  """Evaluates the configured model on every configured split; returns their summaries."""
  n = config.eval.num_instances or config.num_instances
  for split in split_names(config):              # config errors before the model loads
    evaluate.make_protocol(config, split, "")
  checkpoint = resolve_checkpoint(config, workdir)
  model, variables, weights = evaluate.model_and_variables(config, n, checkpoint)
  out = []
  for split in split_names(config):
    protocol = evaluate.make_protocol(config, split, weights)
    out.append(evaluate.evaluate_split(config, model, variables, protocol,
                                       os.path.join(workdir, "eval"), show_progress))
  return out


def run_sweep(config, workdir: str, show_progress: bool = True) -> dict:
  """Baseline and MIPNet over the detector-confidence thresholds; returns the sweep's paths,
  rows and the two evaluations at threshold 0."""
  split = split_names(config)[0]
  det = config.evals[split].det_file
  if not det:
    raise ValueError(f"sweep: config.evals.{split}.det_file is empty (the sweep filters "
                     f"detector boxes by confidence)")
  root = inputs.eval_root(config, split)
  out_dir = os.path.join(workdir, "eval", f"sweep_{split}")
  models = {}
  for name, n, checkpoint in (("baseline", 1, config.eval.baseline_checkpoint),
                              ("mipnet", config.num_instances, config.eval.checkpoint)):
    model, variables, weights = evaluate.model_and_variables(config, n, checkpoint)
    protocol = dataclasses.replace(
        evaluate.make_protocol(config, split, weights), boxes="detections",
        det_file=os.path.join(root, det), min_box_score=0.0, num_instances=n, keep_lambda=-1)
    done = evaluate.evaluate_split(config, model, variables, protocol,
                                   os.path.join(out_dir, name), show_progress)
    models[name] = (done["candidates"], protocol)
  rows = sweep.run_sweep(models, config.eval.sweep_thresholds)
  title = f"{config.experiment}: {split}, AP vs detector confidence"
  paths = sweep.write_sweep(rows, list(models), out_dir, title)
  return dict(paths=paths, rows=rows, table=sweep.format_sweep(rows, list(models)),
              title=title)
