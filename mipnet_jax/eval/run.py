"""One split with one protocol, end to end: boxes -> crops -> every instance's joints (device)
-> discount, rescoring, merge, NMS (host) -> metrics (``--mode=eval`` runs it per split through eval/evaluators.py).

Every output file carries the protocol: ``results_<tag>.json`` is a plain COCO results list
(submittable as is), ``metrics_<tag>.json`` holds {"protocol", "metrics", "counts"} and
``table_<tag>.txt`` prints both; ``candidates_<tag>.npz`` keeps every (box, lambda) prediction
before post-processing, so protocols and confidence sweeps re-run without the network.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from mipnet_jax.core import codec
from mipnet_jax.core.progress import Progress
from mipnet_jax.data import boxes as boxes_lib, inputs, pipeline, transforms
from mipnet_jax.data.coco_format import load_person_records
from mipnet_jax.eval import candidates as cands, postprocess, predict_step
from mipnet_jax.eval.metrics import make_metric
from mipnet_jax.eval.protocol import Protocol
from mipnet_jax.models.load import LoadedModel


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """One evaluated split: its protocol, metrics, counts and files; ``metrics_lambda0`` is the
  baseline-style single-instance mode (λ = 0) scored from the same candidates, when the
  protocol merges N > 1 instances and it was asked for."""

  protocol: Protocol
  metrics: dict[str, float]
  counts: dict
  paths: dict[str, str]
  candidates: cands.Candidates
  metrics_lambda0: dict[str, float] | None = None

  def table(self) -> str:
    return format_table(self.protocol, self.metrics, self.counts)

  def summary(self) -> str:
    """The table, then one JSON line (split, metrics, results file)."""
    return self.table() + "\n" + json.dumps(dict(
        split=self.protocol.split, metrics=self.metrics, results=self.paths["results"]))

  def brief(self) -> str:
    """'  split: AP x (merged, N=n)[, AP y (lambda=0 only, baseline-style)]'."""
    line = (f"  {self.protocol.split}: AP {self.metrics['AP']:.4f} "
            f"({self.protocol.postprocess.mode}, N={self.protocol.num_instances})")
    if self.metrics_lambda0 is not None:
      line += f", AP {self.metrics_lambda0['AP']:.4f} (lambda=0 only, baseline-style)"
    return line


def load_boxes(config, protocol: Protocol) -> tuple[list[boxes_lib.BoxRecord], str]:
  """The protocol's boxes and a one-line account of what was loaded and skipped."""
  _, _, image_dir = inputs.eval_files(config, protocol.split)
  if protocol.boxes == "detections":
    found, report = boxes_lib.load_detections(protocol.det_file, protocol.annotations,
                                              image_dir, protocol.input_hw,
                                              protocol.postprocess.min_box_score)
    return found, str(report)
  records, report = load_person_records(protocol.annotations, protocol.meta, image_dir,
                                        protocol.input_hw)
  if protocol.boxes == "gt_tight":
    return boxes_lib.tight_boxes(records, protocol.input_hw), f"{report} (tight boxes)"
  return boxes_lib.gt_boxes(records), str(report)


def predict_candidates(predict_fn, variables, boxes: list, protocol: Protocol, color: str,
                       batch_size: int, show_progress: bool = True) -> cands.Candidates:
  """Runs the network on every box: one candidate per (box, lambda), box-major, holding the
  protocol's evaluated joints (the model's joints mapped by ``protocol.joints``)."""
  loading = pipeline.Loading(batch_size, num_threads=2, prefetch=2)
  crop = transforms.CropSpec(protocol.input_hw, color, udp=protocol.udp)
  ds = pipeline.eval_dataset(boxes, transforms.EvalSample(crop), loading)
  heatmap_hw = (protocol.input_hw[0] // 4, protocol.input_hw[1] // 4)
  progress = Progress(len(boxes), f"eval {protocol.split}", unit="boxes",
                      enabled=show_progress)
  parts = []                                    # (keypoints, score, scale, image_id) per batch
  for batch in (pipeline.iterate(ds, loading) if boxes else ()):
    n = len(batch["image_id"])
    images = np.zeros((batch_size,) + batch["image"].shape[1:], np.uint8)
    images[:n] = batch["image"]                          # a short last batch keeps the shape
    coords, maxvals = predict_step.decode_on_host(predict_fn(variables, images), protocol.decode)
    xy = codec.heatmap_to_image(coords[:n], batch["center"], batch["scale"], heatmap_hw,
                                udp=protocol.udp)
    parts.append((np.concatenate([xy, maxvals[:n, ..., None]], -1), batch["score"],
                  batch["scale"], batch["image_id"]))
    progress.update(n)
  progress.close()
  if not parts:
    k = len(protocol.joints.names)
    return cands.flat_candidates(np.zeros((0, protocol.num_instances, k, 3)), np.zeros(0),
                                 np.zeros((0, 2)), np.zeros(0, np.int64))
  found = cands.flat_candidates(*(np.concatenate(column) for column in zip(*parts)))
  return found.select_joints(protocol.joints.model_ids)


def score_candidates(candidates: cands.Candidates, protocol: Protocol,
                     min_box_score: float | None = None) -> list[dict]:
  """Discount, rescoring, merge and NMS of the protocol -> COCO result dicts; boxes scoring
  below ``min_box_score`` (if given) are left out first."""
  if min_box_score is not None:
    candidates = candidates.take(np.flatnonzero(candidates.box_score >= min_box_score))
  kept = postprocess.postprocess(candidates, protocol.joints.sigmas, protocol.postprocess)
  return postprocess.coco_results(candidates, kept)


def compute_metrics(results: list[dict], protocol: Protocol) -> dict[str, float]:
  subset = protocol.joints.selects_from(protocol.meta)
  metric = make_metric(protocol.meta, protocol.annotations, metric=protocol.metric,
                       joints=protocol.joints if subset else None,
                       area_rule=protocol.area_rule)
  metric.add(results, source=f"predictions for {protocol.split}")
  return metric.compute()


def format_table(protocol: Protocol, metrics: dict, counts: dict) -> str:
  lines = [f"{protocol.split} ({protocol.dataset}), {protocol.tag}"]
  lines += [f"  {k}: {v}" for k, v in protocol.stamp().items()]
  lines.append("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  lines.append("  " + "  ".join(f"{k:>9}" for k in metrics))
  lines.append("  " + "  ".join(f"{v:9.4f}" for v in metrics.values()))
  return "\n".join(lines)


def write_outputs(out_dir: str, protocol: Protocol, results: list, metrics: dict, counts: dict,
                  candidates: cands.Candidates) -> dict[str, str]:
  """Writes the four files of an evaluation; returns their paths by kind."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"{kind}_{protocol.tag}.{ext}") for kind, ext in
           (("results", "json"), ("metrics", "json"), ("table", "txt"), ("candidates", "npz"))}
  with open(paths["results"], "w") as f:
    json.dump(results, f)
  with open(paths["metrics"], "w") as f:
    json.dump(dict(protocol=protocol.stamp(), metrics=metrics, counts=counts), f, indent=1)
  with open(paths["table"], "w") as f:
    f.write(format_table(protocol, metrics, counts) + "\n")
  cands.save_candidates(paths["candidates"], candidates)
  return paths


def evaluate_split(config, loaded: LoadedModel, protocol: Protocol, out_dir: str,
                   show_progress: bool = True, with_lambda0: bool = False) -> EvalResult:
  """The whole evaluation of one protocol; writes the files of ``write_outputs`` under
  ``out_dir``. ``with_lambda0`` also scores the λ = 0 mode when the protocol merges N > 1."""
  meta = inputs.model_meta(config)
  boxes, box_report = load_boxes(config, protocol)
  predict_fn = predict_step.make_predict_fn(
      loaded.model, protocol.num_instances, meta.flip_permutation if protocol.flip else None,
      protocol.decode)
  candidates = predict_candidates(predict_fn, loaded.variables, boxes, protocol,
                                  config.data.color, config.eval.batch_size, show_progress)
  results = score_candidates(candidates, protocol)
  metrics = compute_metrics(results, protocol)
  counts = dict(boxes=len(boxes), candidates=len(candidates), results=len(results),
                boxes_loaded=box_report)
  paths = write_outputs(out_dir, protocol, results, metrics, counts, candidates)
  lambda0 = None
  if with_lambda0 and protocol.num_instances > 1 and protocol.postprocess.keep_lambda is None:
    single = protocol.with_postprocess(keep_lambda=0)
    lambda0 = compute_metrics(score_candidates(candidates, single), single)
  return EvalResult(protocol, metrics, counts, paths, candidates, lambda0)
