"""What decides the numbers of an evaluation: the protocol, stamped into every output file.

A ``Protocol`` is what is evaluated (split, boxes, N, flip, decoding, weights) plus the
``PostprocessSpec`` (eval/postprocess.py) built once from ``config.eval``. ``evaluated_n`` is
the one rule for the evaluated N, ``split_names`` for the evaluated splits.
"""

from __future__ import annotations

import dataclasses
import os

from mipnet_jax.data import inputs
from mipnet_jax.eval.postprocess import PostprocessSpec

BOX_KINDS = ("gt", "detections")
DECODES = ("quarter", "dark")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Everything that decides the numbers of one evaluation of one split (see config.eval)."""

  split: str
  dataset: str
  annotations: str
  boxes: str                 # "gt" or "detections"
  det_file: str
  num_instances: int
  flip: bool
  decode: str                # "quarter" or "dark"
  input_hw: tuple[int, int]
  weights: str               # the checkpoint evaluated, or "freshly initialised"
  postprocess: PostprocessSpec

  @property
  def tag(self) -> str:
    boxes = "gt" if self.boxes == "gt" else f"det{self.postprocess.min_box_score:g}"
    return f"{self.split}_{boxes}_N{self.num_instances}_{self.postprocess.mode}"

  def stamp(self) -> dict:
    """The flat dict written into every output file (post-processing fields inline)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name != "postprocess"}
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


def make_protocol(config, split: str, weights: str) -> Protocol:
  """The protocol of ``config.eval`` on ``config.eval_data[split]``."""
  ev = config.eval
  if split not in config.eval_data:
    raise ValueError(f"config.eval.splits: {split!r} is not in config.eval_data "
                     f"({', '.join(config.eval_data)})")
  if ev.boxes not in BOX_KINDS:
    raise ValueError(f"config.eval.boxes must be 'gt' or 'detections', got {ev.boxes!r}")
  if ev.decode not in DECODES:
    raise ValueError(f"config.eval.decode must be 'quarter' or 'dark', got {ev.decode!r}")
  dataset, ann_path, _ = inputs.eval_files(config, split)
  det = config.eval_data[split].det_file
  if ev.boxes == "detections" and not det:
    raise ValueError(f"config.eval.boxes='detections' but config.eval_data.{split}.det_file "
                     f"is empty")
  n = evaluated_n(config)
  if ev.keep_lambda >= n:
    raise ValueError(f"config.eval.keep_lambda={ev.keep_lambda} needs N > {ev.keep_lambda}")
  return Protocol(
      split=split, dataset=dataset, annotations=ann_path, boxes=ev.boxes,
      det_file=os.path.join(inputs.eval_root(config, split), det)
      if ev.boxes == "detections" else "",
      num_instances=n, flip=bool(ev.flip), decode=ev.decode,
      input_hw=tuple(config.data.image_hw), weights=weights,
      postprocess=PostprocessSpec.from_eval(ev))
