"""What decides the numbers of an evaluation: the protocol, stamped into every output file.

A ``Protocol`` is what is evaluated (split, boxes, N, flip, decoding, weights), how it is
scored (the joints: the model's joints mapped onto the split's by name, their OKS sigmas, the
metric, its area rule and maxDets) plus the ``PostprocessSpec`` (eval/postprocess.py) built
once from ``config.eval``. ``evaluated_n`` is the one rule for the evaluated N,
``split_names`` for the evaluated splits.

Per split (``config.eval_data.<split>``), besides its files: ``boxes`` ("" = config.eval.boxes),
``joints`` (the evaluated joints: "" = all of the split's, "limbs" or a comma list of names),
``metric`` ("" = the dataset's: crowdpose for CrowdPose, else coco), ``area_rule`` ("" = the
metric's: the ``area`` field for coco, 0.53 x box area for crowdpose) and, for a dataset that
is not built in, ``keypoints`` (its declared joints, see data/inputs.dataset_meta).
"""

from __future__ import annotations

import dataclasses
import os

from mipnet_jax.core.meta import DatasetMeta, JointMap, joint_map
from mipnet_jax.data import inputs
from mipnet_jax.eval.metrics import AREA_RULES, MAX_DETS, METRICS, default_metric
from mipnet_jax.eval.postprocess import PostprocessSpec

# gt: the annotated boxes (OCPose: one relaxed box shared by both people); gt_tight: the
# box of each person's labelled joints (data/boxes.tight_box); detections: the det_file.
BOX_KINDS = ("gt", "gt_tight", "detections")
DECODES = ("quarter", "dark")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Everything that decides the numbers of one evaluation of one split (see config.eval)."""

  split: str
  dataset: str
  annotations: str
  boxes: str                 # one of BOX_KINDS
  det_file: str
  num_instances: int
  flip: bool
  decode: str                # "quarter" or "dark"; "udp_dark" under config.data.udp
  input_hw: tuple[int, int]
  weights: str               # the checkpoint evaluated, or "freshly initialised"
  metric: str                # "coco" or "crowdpose"
  area_rule: str             # "annotation" or "box_0.53"
  joints: JointMap           # the model's joints -> the split's evaluated joints
  meta: DatasetMeta          # the split's annotated joints
  postprocess: PostprocessSpec
  max_dets: int = MAX_DETS

  @property
  def udp(self) -> bool:
    """UDP geometry (crops, flip test, heatmap -> image); its decoding is "udp_dark"."""
    return self.decode == "udp_dark"

  @property
  def tag(self) -> str:
    boxes = (f"det{self.postprocess.min_box_score:g}" if self.boxes == "detections"
             else self.boxes.replace("_", ""))
    return f"{self.split}_{boxes}_N{self.num_instances}_{self.postprocess.mode}"

  def stamp(self) -> dict:
    """The flat dict written into every output file (joints and post-processing inline)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name not in ("postprocess", "joints", "meta")}
    out.update(keypoints=list(self.joints.names), model_joints=list(self.joints.model_ids),
               data_joints=list(self.joints.data_ids), sigmas=list(self.joints.sigmas))
    out.update(dataclasses.asdict(self.postprocess))
    return out

  def with_postprocess(self, **changes) -> Protocol:
    return dataclasses.replace(self, postprocess=dataclasses.replace(self.postprocess,
                                                                     **changes))


def evaluated_n(config) -> int:
  """N of evaluation, export and prediction: ``config.eval.num_instances``, 0 meaning the
  model's ``config.num_instances``."""
  return int(config.eval.num_instances or config.num_instances)


def split_names(config) -> list[str]:
  """``config.eval.splits`` ("coco_val,ochuman_val") as a list of names in config.eval_data."""
  names = [s.strip() for s in str(config.eval.splits).split(",") if s.strip()]
  if not names:
    raise ValueError("config.eval.splits names no split (e.g. --config.eval.splits=coco_val)")
  for name in names:
    if name not in config.eval_data:
      raise ValueError(f"config.eval.splits: {name!r} is not in config.eval_data "
                       f"({', '.join(config.eval_data)})")
  return names


def decode_of(config) -> str:
  """The decoding evaluation uses: "udp_dark" (mmpose's ``post_dark_udp``, kernel 11) when
  ``config.data.udp`` selects UDP's geometry, whatever ``config.eval.decode`` says (that
  field chooses for HRNet's geometry: "quarter" or "dark")."""
  return "udp_dark" if config.data.get("udp", False) else config.eval.decode


def make_protocol(config, split: str, weights: str) -> Protocol:
  """The protocol of ``config.eval`` on ``config.eval_data[split]``."""
  ev = config.eval
  if split not in config.eval_data:
    raise ValueError(f"config.eval.splits: {split!r} is not in config.eval_data "
                     f"({', '.join(config.eval_data)})")
  split_cfg = config.eval_data[split]
  boxes = split_cfg.get("boxes") or ev.boxes
  if boxes not in BOX_KINDS:
    where = f"config.eval_data.{split}.boxes" if split_cfg.get("boxes") else "config.eval.boxes"
    raise ValueError(f"{where} must be one of {', '.join(BOX_KINDS)}, got {boxes!r}")
  if ev.decode not in DECODES:
    raise ValueError(f"config.eval.decode must be 'quarter' or 'dark', got {ev.decode!r}")
  dataset, ann_path, _ = inputs.eval_files(config, split)
  det = split_cfg.det_file
  if boxes == "detections" and not det:
    raise ValueError(f"config.eval.boxes='detections' but config.eval_data.{split}.det_file "
                     f"is empty")
  n = evaluated_n(config)
  if ev.keep_lambda >= n:
    raise ValueError(f"config.eval.keep_lambda={ev.keep_lambda} needs N > {ev.keep_lambda}")
  metric = split_cfg.get("metric") or default_metric(dataset)
  if metric not in METRICS:
    raise ValueError(f"config.eval_data.{split}.metric must be one of {', '.join(METRICS)}, "
                     f"got {metric!r}")
  area_rule = split_cfg.get("area_rule") or METRICS[metric].default_area_rule
  if area_rule not in AREA_RULES:
    raise ValueError(f"config.eval_data.{split}.area_rule must be one of "
                     f"{', '.join(AREA_RULES)}, got {area_rule!r}")
  meta = inputs.split_meta(config, split)
  try:
    joints = joint_map(inputs.model_meta(config), meta, split_cfg.get("joints") or "")
  except ValueError as e:
    raise ValueError(f"config.eval_data.{split}.{e}") from None
  return Protocol(
      split=split, dataset=dataset, annotations=ann_path, boxes=boxes,
      det_file=os.path.join(inputs.eval_root(config, split), det)
      if boxes == "detections" else "",
      num_instances=n, flip=bool(ev.flip), decode=decode_of(config),
      input_hw=tuple(config.data.image_hw), weights=weights, metric=metric,
      area_rule=area_rule, joints=joints, meta=meta,
      postprocess=PostprocessSpec.from_eval(ev))
