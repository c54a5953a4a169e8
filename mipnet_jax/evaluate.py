"""Evaluation of a model on one split with one protocol: boxes -> crops -> every instance's
joints (device) -> discount, rescoring, merge, NMS (host) -> metrics.

Every output file carries the protocol: ``results_<tag>.json`` is a plain COCO results list
(submittable as is), ``metrics_<tag>.json`` holds {"protocol", "metrics", "counts"} and
``table_<tag>.txt`` prints both; ``candidates_<tag>.npz`` keeps every (box, lambda) prediction
before post-processing, so protocols and confidence sweeps re-run without the network.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from mipnet_jax import checkpoints, codec, inference, postprocess
from mipnet_jax.data import boxes as boxes_lib, inputs, pipeline, transforms
from mipnet_jax.data.coco_format import load_person_records
from mipnet_jax.data.meta import get_meta
from mipnet_jax.evaluation import make_evaluator
from mipnet_jax.models import build_model, init_variables
from mipnet_jax.progress import Progress


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Everything that decides the numbers of an evaluation (see config.eval)."""

  split: str
  dataset: str
  annotations: str
  boxes: str                 # "gt" or "detections"
  det_file: str
  min_box_score: float
  num_instances: int
  flip: bool
  gamma: float
  gamma_mode: str            # "power" (paper) or "constant" (authors' code)
  in_vis_thre: float
  nms: str                   # "oks", "soft_oks" or "none"
  nms_threshold: float
  keep_lambda: int           # -1: merged; k: single-instance mode lambda = k
  decode: str                # "quarter" or "dark"
  input_hw: tuple[int, int]
  weights: str               # the checkpoint evaluated, or "freshly initialised"

  @property
  def tag(self) -> str:
    boxes = "gt" if self.boxes == "gt" else f"det{self.min_box_score:g}"
    mode = "merged" if self.keep_lambda < 0 else f"lambda{self.keep_lambda}"
    return f"{self.split}_{boxes}_N{self.num_instances}_{mode}"


def make_protocol(config, split: str, weights: str) -> Protocol:
  """The protocol of ``config.eval`` on ``config.evals[split]``."""
  ev = config.eval
  if split not in config.evals:
    raise ValueError(f"config.eval.splits: {split!r} is not in config.evals "
                     f"({', '.join(config.evals)})")
  if ev.boxes not in ("gt", "detections"):
    raise ValueError(f"config.eval.boxes must be 'gt' or 'detections', got {ev.boxes!r}")
  dataset, ann_path, _ = inputs.eval_files(config, split)
  det = config.evals[split].det_file
  if ev.boxes == "detections" and not det:
    raise ValueError(f"config.eval.boxes='detections' but config.evals.{split}.det_file is "
                     f"empty")
  root = inputs.eval_root(config, split)
  n = ev.num_instances or config.num_instances
  if ev.keep_lambda >= n:
    raise ValueError(f"config.eval.keep_lambda={ev.keep_lambda} needs N > {ev.keep_lambda}")
  return Protocol(
      split=split, dataset=dataset, annotations=ann_path, boxes=ev.boxes,
      det_file=os.path.join(root, det) if ev.boxes == "detections" else "",
      min_box_score=float(ev.min_box_score), num_instances=n, flip=bool(ev.flip),
      gamma=float(ev.gamma), gamma_mode=ev.gamma_mode, in_vis_thre=float(ev.in_vis_thre),
      nms=ev.nms, nms_threshold=float(ev.nms_threshold), keep_lambda=int(ev.keep_lambda),
      decode=ev.decode, input_hw=tuple(config.data.image_hw), weights=weights)


def load_boxes(config, protocol: Protocol) -> tuple[list[boxes_lib.BoxRecord], str]:
  """The protocol's boxes and a one-line account of what was loaded and skipped."""
  _, _, image_dir = inputs.eval_files(config, protocol.split)
  if protocol.boxes == "detections":
    found, report = boxes_lib.load_detections(protocol.det_file, protocol.annotations,
                                              image_dir, protocol.input_hw,
                                              protocol.min_box_score)
  else:
    records, report = load_person_records(protocol.annotations, get_meta(protocol.dataset),
                                          image_dir, protocol.input_hw)
    found = boxes_lib.gt_boxes(records)
  return found, str(report)


def predict_candidates(predict_fn, variables, boxes: list, protocol: Protocol, color: str,
                       batch_size: int, show_progress: bool = True) -> postprocess.Candidates:
  """Runs the network on every box: one candidate per (box, lambda), box-major."""
  crop = transforms.CropSpec(protocol.input_hw, color)
  loading = pipeline.Loading(batch_size, num_threads=2, prefetch=2)
  ds = pipeline.eval_dataset(boxes, transforms.EvalSample(crop), loading)
  heatmap_hw = (protocol.input_hw[0] // 4, protocol.input_hw[1] // 4)
  progress = Progress(len(boxes), f"eval {protocol.split}", unit="boxes",
                      enabled=show_progress)
  parts = []                                    # (keypoints, score, scale, image_id) per batch
  for batch in (pipeline.iterate(ds, loading) if boxes else ()):
    n = len(batch["image_id"])
    images = np.zeros((batch_size,) + batch["image"].shape[1:], np.uint8)
    images[:n] = batch["image"]                          # a short last batch keeps the shape
    coords, maxvals = inference.decode_on_host(predict_fn(variables, images), protocol.decode)
    xy = codec.boxes_to_image(coords[:n], batch["center"], batch["scale"], heatmap_hw)
    parts.append((np.concatenate([xy, maxvals[:n, ..., None]], -1), batch["score"],
                  batch["scale"], batch["image_id"]))
    progress.update(n)
  progress.close()
  if not parts:
    k = get_meta(protocol.dataset).num_keypoints
    return flat_candidates(np.zeros((0, protocol.num_instances, k, 3)), np.zeros(0),
                           np.zeros((0, 2)), np.zeros(0, np.int64))
  return flat_candidates(*(np.concatenate(column) for column in zip(*parts)))


def flat_candidates(keypoints: np.ndarray, box_score: np.ndarray, scale: np.ndarray,
                    image_id: np.ndarray) -> postprocess.Candidates:
  """Per-box predictions keypoints [B, N, K, 3], box_score [B], scale [B, 2], image_id [B]
  -> B * N candidates, box-major (row b * N + lambda)."""
  b, n = keypoints.shape[:2]
  return postprocess.Candidates(
      keypoints=keypoints.reshape((b * n,) + keypoints.shape[2:]).astype(np.float32),
      box_score=np.repeat(box_score, n), area=np.repeat(postprocess.padded_box_area(scale), n),
      image_id=np.repeat(image_id, n), lam=np.tile(np.arange(n), b))


def save_candidates(path: str, c: postprocess.Candidates) -> None:
  np.savez_compressed(path, **{f.name: getattr(c, f.name)
                               for f in dataclasses.fields(postprocess.Candidates)})


def load_candidates(path: str) -> postprocess.Candidates:
  """Candidates written by ``save_candidates`` (plain arrays; no pickles are loaded)."""
  with np.load(path, allow_pickle=False) as z:
    return postprocess.Candidates(**{f.name: z[f.name]
                                     for f in dataclasses.fields(postprocess.Candidates)})


def score_candidates(candidates: postprocess.Candidates, protocol: Protocol,
                     min_box_score: float | None = None) -> list[dict]:
  """Discount, rescoring, merge and NMS of the protocol -> COCO result dicts."""
  if min_box_score is not None:
    candidates = candidates.take(np.flatnonzero(candidates.box_score >= min_box_score))
  kept = postprocess.postprocess(
      candidates, get_meta(protocol.dataset).sigmas, gamma=protocol.gamma,
      gamma_mode=protocol.gamma_mode, in_vis_thre=protocol.in_vis_thre, nms=protocol.nms,
      nms_threshold=protocol.nms_threshold,
      keep_lambda=None if protocol.keep_lambda < 0 else protocol.keep_lambda)
  return postprocess.coco_results(candidates, kept)


def compute_metrics(results: list[dict], protocol: Protocol) -> dict[str, float]:
  evaluator = make_evaluator(protocol.dataset, protocol.annotations)
  evaluator.add(results, source=f"predictions for {protocol.split}")
  return evaluator.compute()


def format_table(protocol: Protocol, metrics: dict, counts: dict) -> str:
  lines = [f"{protocol.split} ({protocol.dataset}), {protocol.tag}"]
  lines += [f"  {k}: {v}" for k, v in dataclasses.asdict(protocol).items()]
  lines.append("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
  lines.append("  " + "  ".join(f"{k:>9}" for k in metrics))
  lines.append("  " + "  ".join(f"{v:9.4f}" for v in metrics.values()))
  return "\n".join(lines)


def write_outputs(out_dir: str, protocol: Protocol, results: list, metrics: dict, counts: dict,
                  candidates: postprocess.Candidates) -> dict[str, str]:
  """Writes the four files of an evaluation; returns their paths by kind."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"{kind}_{protocol.tag}.{ext}") for kind, ext in
           (("results", "json"), ("metrics", "json"), ("table", "txt"), ("candidates", "npz"))}
  with open(paths["results"], "w") as f:
    json.dump(results, f)
  with open(paths["metrics"], "w") as f:
    json.dump(dict(protocol=dataclasses.asdict(protocol), metrics=metrics, counts=counts), f,
              indent=1)
  with open(paths["table"], "w") as f:
    f.write(format_table(protocol, metrics, counts) + "\n")
  save_candidates(paths["candidates"], candidates)
  return paths


def model_and_variables(config, num_instances: int, checkpoint: str):
  """(model, variables, description) for N = ``num_instances``: the checkpoint's weights, or
  freshly initialised ones (seed ``config.seed``) when ``checkpoint`` is empty."""
  model = build_model(config.model, num_instances)
  init = lambda: init_variables(model, tuple(config.data.image_hw),   # noqa: E731
                                jax.random.key(config.seed))
  if not checkpoint:
    return model, init(), "freshly initialised (no checkpoint)"
  variables = checkpoints.load_variables(checkpoint, jax.eval_shape(init))
  state = checkpoints.training_checkpoint(os.path.abspath(checkpoint))
  return model, variables, os.path.dirname(state) if state else checkpoint


def evaluate_split(config, model, variables, protocol: Protocol, out_dir: str,
                   show_progress: bool = True) -> dict:
  """The whole evaluation of one protocol; returns {"protocol", "metrics", "counts", "paths",
  "table"} and writes the files of ``write_outputs`` under ``out_dir``."""
  meta = get_meta(protocol.dataset)
  boxes, box_report = load_boxes(config, protocol)
  predict_fn = inference.make_predict_fn(
      model, protocol.num_instances, meta.flip_permutation if protocol.flip else None,
      "quarter" if protocol.decode == "quarter" else "heatmaps")
  candidates = predict_candidates(predict_fn, variables, boxes, protocol, config.data.color,
                                  config.eval.batch_size, show_progress)
  results = score_candidates(candidates, protocol)
  metrics = compute_metrics(results, protocol)
  counts = dict(boxes=len(boxes), candidates=len(candidates), results=len(results),
                boxes_loaded=box_report)
  paths = write_outputs(out_dir, protocol, results, metrics, counts, candidates)
  return dict(protocol=dataclasses.asdict(protocol), metrics=metrics, counts=counts,
              paths=paths, table=format_table(protocol, metrics, counts),
              candidates=candidates)
