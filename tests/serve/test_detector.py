"""The ONNX person detector (serve/detector.py) on detectors the test builds with onnx's helper
API, whose outputs are known: the letterbox, both output layouts, NMS, the class and score
filters, the mapping back to image pixels, and the one-line errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mipnet_jax.serve import detector as det_lib  # noqa: E402

INPUT_HW = (64, 96)           # (h, w) of the detectors built here


def constant_detector(path, outputs: dict[str, np.ndarray], input_hw=INPUT_HW,
                      echo_input: bool = False):
  """An ONNX model [1, 3, H, W] -> the given constant outputs (each plus 0 x the input's
  mean, so the input is consumed); ``echo_input`` also returns the input as output 'seen'."""
  nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
           helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
  inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
  outs = []
  for name, value in outputs.items():
    inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_value"))
    nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
    outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
  if echo_input:
    nodes.append(helper.make_node("Identity", ["images"], ["seen"]))
    outs.append(helper.make_tensor_value_info("seen", TensorProto.FLOAT, [1, 3, *input_hw]))
  graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info(
      "images", TensorProto.FLOAT, [1, 3, *input_hw])], outs, inits)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
  model.ir_version = 8
  onnx.save(model, str(path))
  return str(path)


def test_letterbox_is_resize_then_pad_top_left():
  image = np.random.default_rng(0).integers(0, 255, (30, 90, 3), np.uint8)
  canvas, ratio = det_lib.letterbox(image, INPUT_HW)
  assert ratio == min(64 / 30, 96 / 90) == 96 / 90
  want = np.full((64, 96, 3), 114, np.uint8)
  want[:32, :96] = cv2.resize(image, (96, 32), interpolation=cv2.INTER_LINEAR)
  np.testing.assert_array_equal(canvas, want)


def test_dets_layout_maps_back_to_image_pixels(tmp_path):
  """NMS-inside layout: boxes in input pixels / r, clipped; other classes and low scores
  dropped; best first; the network sees the BGR letterboxed image as float 0-255."""
  dets = np.array([[[10, 4, 40, 60, 0.6], [0, 0, 20, 20, 0.95], [50, 10, 95, 63, 0.9],
                    [5, 5, 30, 30, 0.2]]], np.float32)
  labels = np.array([[0, 2, 0, 0]], np.float32)
  path = constant_detector(tmp_path / "d.onnx", {"dets": dets, "labels": labels},
                           echo_input=True)
  d = det_lib.OnnxDetector(path, score_threshold=0.3)
  assert (d.layout, d.input_hw) == ("dets", INPUT_HW)
  image = np.zeros((120, 150, 3), np.uint8)
  image[..., 0] = 200                                            # red in RGB
  boxes, scores = d(image)
  r = min(64 / 120, 96 / 150)
  # The class-2 box and the 0.2 box are gone; x2 = 95 / r = 178 clips to W - 1 = 149.
  np.testing.assert_allclose(boxes, [[50 / r, 10 / r, 149 - 50 / r, 63 / r - 10 / r],
                                     [10 / r, 4 / r, 30 / r, 56 / r]], rtol=1e-6)
  np.testing.assert_allclose(scores, [0.9, 0.6], rtol=1e-6)
  seen = d.session.run(["seen"], {d.input_name: np.ascontiguousarray(
      det_lib.letterbox(image[..., ::-1], INPUT_HW)[0].transpose(2, 0, 1)[None],
      np.float32)})[0]
  assert seen[0, 2, 0, 0] == 200 and seen[0, 0, 0, 0] == 0        # BGR: red is channel 2
  # r = 64 / 120: the image is 80 columns wide on the canvas, the pad is to its right.
  assert seen[0, 0, 0, 79] == 0 and seen[0, 0, 0, 80] == seen[0, 2, 63, 95] == 114


def yolox_raw(boxes_xyxy: list, scores: list, classes: list, num_classes: int = 3) -> np.ndarray:
  """A raw YOLOX output [1, A, 5 + C] holding the given boxes (input pixels) on the stride-8
  anchors under their centres, objectness 1 and the score on the class; all else 0."""
  anchors = sum((INPUT_HW[0] // s) * (INPUT_HW[1] // s) for s in det_lib.STRIDES)
  raw = np.zeros((anchors, 5 + num_classes), np.float32)
  raw[:, 2:4] = -10.0                                      # tiny boxes elsewhere
  w8 = INPUT_HW[1] // 8
  for (x1, y1, x2, y2), score, cls in zip(boxes_xyxy, scores, classes):
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    gx, gy = int(cx // 8), int(cy // 8)
    i = gy * w8 + gx
    raw[i, :4] = [cx / 8 - gx, cy / 8 - gy, np.log((x2 - x1) / 8), np.log((y2 - y1) / 8)]
    raw[i, 4], raw[i, 5 + cls] = 1.0, score
  return raw[None]


def test_raw_yolox_layout_decodes_filters_and_suppresses(tmp_path):
  boxes = [[10, 8, 42, 56], [18, 8, 50, 56], [60, 20, 90, 60], [60, 0, 80, 20]]
  raw = yolox_raw(boxes, [0.9, 0.8, 0.7, 0.95], [0, 0, 0, 1])
  d = det_lib.OnnxDetector(constant_detector(tmp_path / "y.onnx", {"output": raw}))
  assert d.layout == "yolox"
  found, scores = d(np.zeros(INPUT_HW + (3,), np.uint8))         # r = 1
  # Box 2 overlaps box 1 at IoU 24*48 / (32*48 + 32*48 - 24*48) = 0.6 > 0.45: suppressed;
  # box 4 is class 1, not a person.
  np.testing.assert_allclose(found, [[10, 8, 32, 48], [60, 20, 30, 40]], atol=1e-4)
  np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)
  d.nms_iou = 0.95
  assert len(d(np.zeros(INPUT_HW + (3,), np.uint8))[0]) == 3


def test_nms_by_hand():
  xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
  scores = np.array([0.5, 0.9, 0.8, 0.5])
  # IoU(1, 0) = 90 / 110 = 0.818: dropped at 0.5, kept at 0.85; box 3 equals box 0.
  assert det_lib.nms(xyxy, scores, 0.5).tolist() == [1, 2]
  assert det_lib.nms(xyxy, scores, 0.85).tolist() == [1, 2, 0]


def test_bad_files_are_one_line_errors(tmp_path):
  with pytest.raises(ValueError, match=r"^.*missing\.onnx: detector file not found$"):
    det_lib.OnnxDetector(str(tmp_path / "missing.onnx"))
  junk = tmp_path / "junk.onnx"
  junk.write_bytes(b"not a model at all")
  with pytest.raises(ValueError) as info:
    det_lib.OnnxDetector(str(junk))
  assert str(info.value).startswith(f"{junk}: not a usable ONNX model (")
  assert "\n" not in str(info.value)
  dyn = tmp_path / "dynamic.onnx"
  graph = helper.make_graph(
      [helper.make_node("Identity", ["images"], ["out"])], "g",
      [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "h", "w"])],
      [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
  model.ir_version = 8
  onnx.save(model, str(dyn))
  with pytest.raises(ValueError, match=r"expected one input \[1, 3, H, W\] with a fixed H and W"):
    det_lib.OnnxDetector(str(dyn))
  with pytest.raises(ValueError, match="detector layout must be one of auto, dets, yolox"):
    det_lib.OnnxDetector(str(dyn), layout="ssd")


# ---- --mode=predict with a detector ----------------------------------------------------------

DETS = np.array([[[4, 6, 40, 60, 0.9], [50, 2, 90, 50, 0.7], [10, 10, 20, 20, 0.1]]],
                np.float32)


def test_predict_on_the_coco_sample_with_a_detector(predictor, coco, tmp_path):
  """Every image gets the detector's boxes mapped back by its own letterbox ratio (the 0.1 box
  falls below the threshold) and the Predictor's poses on exactly those boxes."""
  import json

  from mipnet_jax.data.image import read_image
  from mipnet_jax.serve import predict

  d = det_lib.OnnxDetector(constant_detector(tmp_path / "d.onnx", {"dets": DETS}))
  done = predict.run_predict(predictor, str(coco), str(tmp_path / "out"), detector=d)
  results = json.loads(open(done.paths["predictions"]).read())
  want = []
  for path in sorted(coco.glob("*.jpg")):
    image = read_image(str(path))
    h, w = image.shape[:2]
    r = min(64 / h, 96 / w)
    xyxy = np.array([[4, 6, 40, 60], [50, 2, 90, 50]], np.float64) / r
    xyxy = np.minimum(xyxy, [w - 1, h - 1, w - 1, h - 1])        # clipped to the image
    boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    np.testing.assert_allclose(d(image)[0], boxes, rtol=1e-5)
    want += predict.pose_results(predictor(image, *d(image)), int(path.stem))
  assert results == json.loads(json.dumps(want)) and len(results) >= 8
  assert done.boxes == (f"detector {tmp_path / 'd.onnx'}: 8 person boxes in 4 of 4 images "
                        f"(score >= 0)")
  # The Predictor's own detector hook gives the same poses.
  predictor.detector = d
  try:
    image = read_image(str(coco / "000000000785.jpg"))
    assert [p.score for p in predictor(image)] == [p.score for p in predictor(image, *d(image))]
  finally:
    predictor.detector = None


def test_cli_predict_with_detector_and_its_errors(served_model, coco, tmp_path):
  import json
  import subprocess
  import sys

  from conftest import REPO_ROOT

  def main(*args):
    return subprocess.run([sys.executable, "-m", "mipnet_jax.main", "--mode=predict",
                           f"--bundle={served_model[2]}", f"--output_dir={tmp_path / 'o'}",
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

  path = constant_detector(tmp_path / "d.onnx", {"dets": DETS})
  done = main(f"--images={coco}", f"--detector={path}")
  assert done.returncode == 0, done.stderr
  line = json.loads(done.stdout.strip().splitlines()[-1])
  assert line["boxes"].startswith(f"detector {path}: 8 person boxes") and line["images"] == 4
  bad = tmp_path / "bad.onnx"
  bad.write_text("no model")
  for args, message in (([f"--detector={bad}"], f"{bad}: not a usable ONNX model ("),
                        ([f"--detector={path}", f"--boxes={coco / 'test_coco_det_AP_H_56.json'}"],
                         "predict: --boxes goes with --images, without --detector or --video")):
    done = main(f"--images={coco}", *args)
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]


# ---- named detectors: fetch, cache, verify ---------------------------------------------------

def test_fetch_from_a_local_url_caches_and_verifies(tmp_path):
  import hashlib
  import zipfile

  from mipnet_jax.serve import detector_zoo as zoo
  onnx_path = constant_detector(tmp_path / "end2end.onnx", {"dets": DETS})
  data = open(onnx_path, "rb").read()
  archive = tmp_path / "published.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("yolox_x/end2end.onnx", data)
    z.writestr("yolox_x/deploy.json", "{}")
  spec = zoo.Published(archive.as_uri(), hashlib.sha256(data).hexdigest(), INPUT_HW)
  cache = tmp_path / "cache"
  path = zoo.fetch("toy", spec, str(cache))
  assert path == str(cache / "toy.onnx") and open(path, "rb").read() == data
  assert det_lib.OnnxDetector(path).layout == "dets"
  archive.unlink()                                        # cached: no second download
  assert zoo.fetch("toy", spec, str(cache)) == path
  assert sorted(p.name for p in cache.iterdir()) == ["toy.onnx"]


def test_fetch_errors_name_url_hash_and_cache_path(tmp_path):
  from mipnet_jax.serve import detector_zoo as zoo
  onnx_path = constant_detector(tmp_path / "m.onnx", {"dets": DETS})
  url = (tmp_path / "m.onnx").as_uri()
  cache = tmp_path / "cache"
  wrong = zoo.Published(url, "0" * 64, INPUT_HW)
  with pytest.raises(ValueError) as info:
    zoo.fetch("toy", wrong, str(cache))
  assert str(info.value) == (f"{url}: its .onnx has sha256 {zoo.sha256_file(onnx_path)}: "
                             f"expected sha256 {'0' * 64}; the extracted .onnx can be placed "
                             f"by hand at {cache / 'toy.onnx'}")
  assert not (cache / "toy.onnx").exists() and list(cache.iterdir()) == []
  offline = zoo.Published((tmp_path / "nowhere.zip").as_uri(), "0" * 64, INPUT_HW)
  with pytest.raises(ValueError, match=r"^cannot download file://.*nowhere\.zip \(.*\): "
                                       r"expected sha256 0{64}; the extracted \.onnx can be "
                                       r"placed by hand at .*toy\.onnx$"):
    zoo.fetch("toy", offline, str(cache))
  # A file placed by hand with the wrong content is refused, not used.
  (cache / "toy.onnx").write_bytes(b"something else")
  with pytest.raises(ValueError, match=r"toy\.onnx: sha256 [0-9a-f]{64} differs from the "
                                       r"published file://"):
    zoo.fetch("toy", offline, str(cache))


def test_named_detectors_are_registered_and_other_values_are_paths(tmp_path, monkeypatch):
  from mipnet_jax.serve import detector_zoo as zoo
  assert {k: v.input_hw for k, v in zoo.NAMED_DETECTORS.items()} == {
      "yolox_tiny_humanart": (416, 416), "yolox_m_humanart": (640, 640)}
  assert all(len(v.sha256) == 64 and v.url.endswith(".zip")
             for v in zoo.NAMED_DETECTORS.values())
  monkeypatch.setenv("MIPNET_JAX_CACHE", str(tmp_path))
  assert zoo.cache_dir() == str(tmp_path / "detectors")
  assert zoo.resolve_detector("my/person.onnx") == "my/person.onnx"
  with pytest.raises(ValueError, match=r"^--detector=yolo: not a named detector "
                                       r"\(yolox_tiny_humanart, yolox_m_humanart\) nor an "
                                       r"\.onnx file$"):
    zoo.resolve_detector("yolo")
