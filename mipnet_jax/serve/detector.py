"""Person boxes for ``--mode=predict`` from an ONNX detector run with onnxruntime.

The detectors of the RTMPose tooling (YOLOX trained on people) come in two output layouts,
both read here (``layout="auto"`` tells them apart by the output's last dimension):

* ``dets``: NMS inside the model (the mmdeploy export): ``dets`` [1, N, 5] = (x1, y1, x2, y2,
  score) in input pixels, optionally ``labels`` [1, N] (class ids; only ``person_class`` is
  kept when present).
* ``yolox``: the raw YOLOX head [1, A, 5 + C]: per anchor of the stride-8, 16 and 32 grids
  (row-major, strides in that order) (dx, dy, log w, log h, objectness, C class scores); box
  centre = (grid cell + (dx, dy)) x stride, size = exp(log size) x stride, score =
  objectness x class score of ``person_class``; greedy NMS here (IoU > ``nms_iou`` drops).

Preprocessing is YOLOX's letterbox: the image (BGR, the detectors' training colour order) is
resized by r = min(H_in / H, W_in / W) with bilinear interpolation to (round down) r·H × r·W,
placed at the top-left of an H_in × W_in canvas of 114, and fed as float32 NCHW 0-255. Boxes
map back by dividing by r, are clipped to the image ([0, W - 1] x [0, H - 1]) and returned as
(x, y, w, h) with their scores; boxes scoring below ``score_threshold`` or without area after
clipping are dropped.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from mipnet_jax.serve.onnx_runtime import open_session

PAD_VALUE = 114
STRIDES = (8, 16, 32)
LAYOUTS = ("auto", "dets", "yolox")


def letterbox(image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
  """uint8 [H, W, 3] -> (uint8 [h_in, w_in, 3] canvas, ratio r): the module docstring's
  resize-and-pad."""
  h, w = image.shape[:2]
  ratio = min(input_hw[0] / h, input_hw[1] / w)
  size = (int(w * ratio), int(h * ratio))
  canvas = np.full((*input_hw, 3), PAD_VALUE, np.uint8)
  canvas[:size[1], :size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
  return canvas, ratio


def to_image_boxes(xyxy: np.ndarray, ratio: float, image_hw: tuple[int, int]) -> np.ndarray:
  """[M, 4] (x1, y1, x2, y2) in input pixels -> [M, 4] float32 (x, y, w, h) in the image,
  clipped to it."""
  xyxy = np.asarray(xyxy, np.float64) / ratio
  xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, image_hw[1] - 1)
  xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, image_hw[0] - 1)
  return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float32)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
  """Greedy NMS: indices kept, best score first; a box whose IoU with a kept one exceeds
  ``iou`` is dropped (areas as (x2 - x1) (y2 - y1))."""
  order = np.argsort(-scores, kind="stable")
  area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
  keep = []
  while order.size:
    i, rest = order[0], order[1:]
    keep.append(i)
    lo = np.maximum(xyxy[i, :2], xyxy[rest, :2])
    hi = np.minimum(xyxy[i, 2:], xyxy[rest, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
    order = rest[overlap <= iou]
  return np.array(keep, np.int64)


def decode_yolox(raw: np.ndarray, input_hw: tuple[int, int], person_class: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Raw YOLOX head [A, 5 + C] -> (boxes [A, 4] x1 y1 x2 y2 in input pixels, scores [A])."""
  grids, strides = [], []
  for s in STRIDES:
    gy, gx = np.mgrid[:input_hw[0] // s, :input_hw[1] // s]
    grids.append(np.stack([gx.ravel(), gy.ravel()], 1))
    strides.append(np.full(gx.size, s))
  grid, stride = np.concatenate(grids), np.concatenate(strides)[:, None]
  if len(grid) != len(raw):
    raise ValueError(f"the YOLOX output has {len(raw)} anchors; an input of {input_hw} (h, w) "
                     f"with strides {STRIDES} has {len(grid)}")
  center = (raw[:, :2] + grid) * stride
  size = np.exp(raw[:, 2:4]) * stride
  scores = raw[:, 4] * raw[:, 5 + person_class]
  return np.concatenate([center - size / 2, center + size / 2], 1), scores


@dataclasses.dataclass
class OnnxDetector:
  """An ONNX person detector: ``detector(image_rgb) -> (boxes [M, 4] (x, y, w, h), scores
  [M])`` in image pixels, best first (module docstring).

  Attributes:
    path: the .onnx file. score_threshold: boxes below are dropped. nms_iou: IoU of the NMS
    (raw layout). person_class: the class id of people. layout: one of LAYOUTS.
    providers: onnxruntime execution providers (default: CUDA when this onnxruntime has it,
    then CPU).
  """

  path: str
  score_threshold: float = 0.3
  nms_iou: float = 0.45
  person_class: int = 0
  layout: str = "auto"
  providers: tuple = ()

  def __post_init__(self):
    if self.layout not in LAYOUTS:
      raise ValueError(f"detector layout must be one of {', '.join(LAYOUTS)}, got "
                       f"{self.layout!r}")
    self.session = open_session(self.path, "detector", self.providers)
    inputs = self.session.get_inputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if not shape or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
      raise ValueError(f"{self.path}: expected one input [1, 3, H, W] with a fixed H and W, "
                       f"got {[(i.name, i.shape) for i in inputs]}")
    self.input_name, self.input_hw = inputs[0].name, (shape[2], shape[3])
    outputs = self.session.get_outputs()
    self.output_names = [o.name for o in outputs]
    if self.layout == "auto":
      self.layout = "dets" if outputs[0].shape[-1] == 5 else "yolox"

  def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    canvas, ratio = letterbox(image[..., ::-1], self.input_hw)        # RGB -> BGR
    feed = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], np.float32)
    outputs = self.session.run(self.output_names, {self.input_name: feed})
    if self.layout == "dets":
      dets = outputs[0].reshape(-1, 5)
      xyxy, scores = dets[:, :4], dets[:, 4]
      if len(outputs) > 1:
        person = outputs[1].reshape(-1) == self.person_class
        xyxy, scores = xyxy[person], scores[person]
    else:
      xyxy, scores = decode_yolox(outputs[0].reshape(outputs[0].shape[-2], -1),
                                  self.input_hw, self.person_class)
      keep = scores >= self.score_threshold
      xyxy, scores = xyxy[keep], scores[keep]
      keep = nms(xyxy, scores, self.nms_iou)
      xyxy, scores = xyxy[keep], scores[keep]
    keep = scores >= self.score_threshold
    boxes = to_image_boxes(xyxy[keep], ratio, image.shape[:2])
    scores = np.asarray(scores[keep], np.float64)
    has_area = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    order = np.argsort(-scores[has_area], kind="stable")
    return boxes[has_area][order], scores[has_area][order]
