"""``--mode=predict``: the files written on the shared COCO sample (the Predictor's poses per
image, read back by pycocotools), image / detection matching and its one-line errors, the CLI
with a bundle, and the typed result."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from mipnet_jax.data import coco_format
from mipnet_jax.data.image import read_image
from mipnet_jax.serve import predict

CONFIG = "hrnet_w32_synthetic_256x192"
IDS = {785, 40083, 196141, 197388}


def test_predict_on_the_coco_sample_writes_results_pycocotools_reads(predictor, coco, tmp_path):
  from pycocotools.coco import COCO as CocoApi
  dets = json.loads((coco / "test_coco_det_AP_H_56.json").read_text())
  done = predict.run_predict(predictor, str(coco / "*.jpg"), str(tmp_path / "a"),
                             str(coco / "test_coco_det_AP_H_56.json"), str(coco / "test_coco.json"))
  results = json.loads(open(done.paths["predictions"]).read())
  # Per image (sorted file names), the Predictor's poses on that image's detections.
  want = []
  for path in sorted(str(p) for p in coco.glob("*.jpg")):
    image_id = int(os.path.basename(path)[:-4])
    mine = [d for d in dets if d["image_id"] == image_id]
    poses = predictor(read_image(path), np.array([d["bbox"] for d in mine]),
                      np.array([d["score"] for d in mine]))
    want += predict.pose_results(poses, image_id)
  assert results == json.loads(json.dumps(want))
  assert (done.images, done.poses) == (4, len(results))
  assert done.boxes == (f"{coco / 'test_coco_det_AP_H_56.json'}: 118 person boxes from 4 "
                        "images; skipped none")
  assert done.weights == predictor.weights and done.output_dir == str(tmp_path / "a")
  assert {r["image_id"] for r in results} == IDS and {r["lambda"] for r in results} <= {0, 1}
  gt = CocoApi(str(coco / "test_coco.json"))
  assert len(gt.loadRes(done.paths["predictions"]).getAnnIds()) == len(results)
  table = json.loads(open(done.paths["images"]).read())
  assert [(t["id"], t["file_name"]) for t in table] == sorted(
      (int(p.stem), p.name) for p in coco.glob("*.jpg"))
  for png, row in zip(done.paths["pngs"], table):
    assert os.path.basename(png) == row["file_name"].replace(".jpg", ".png")
    assert cv2.imread(png).shape == (row["height"], row["width"], 3)
  # COCO-style file names give the same ids without --annotations, hence the same results.
  again = predict.run_predict(predictor, str(coco), str(tmp_path / "b"),
                              str(coco / "test_coco_det_AP_H_56.json"))
  assert json.loads(open(again.paths["predictions"]).read()) == results


def test_image_and_detection_matching_errors_name_the_file(coco, tmp_path):
  with pytest.raises(ValueError, match=r"--images=.*nothing\*\.jpg: no image file matches"):
    predict.list_images(str(tmp_path / "nothing*.jpg"))
  one = [str(coco / "000000000785.jpg")]
  dets = str(coco / "test_coco_det_AP_H_56.json")
  with pytest.raises(coco_format.AnnotationError,
                     match=r"test_coco_det_AP_H_56\.json: detection \d+: field 'image_id' \d+ "
                           r"matches no file of --images"):
    predict.detections_by_image(dets, predict.image_ids(one))
  # With the annotation file, detections of its other images are skipped.
  ann = str(coco / "test_coco.json")
  found, report = predict.detections_by_image(dets, predict.image_ids(one, ann), ann)
  assert list(found) == [785] and len(found[785][0]) == 22 and "not in --images: 96" in report
  bad = tmp_path / "dets.json"
  bad.write_text(json.dumps([{"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5],
                              "score": 1.0}]))
  with pytest.raises(coco_format.AnnotationError,
                     match=r"dets\.json: detection 0: field 'image_id' 99 is not an image of .*"
                           r"test_coco\.json"):
    predict.detections_by_image(str(bad), predict.image_ids(one, ann), ann)
  (tmp_path / "cat.jpg").write_bytes((coco / "000000000785.jpg").read_bytes())
  with pytest.raises(ValueError, match=r"cat\.jpg: no image id in the file name"):
    predict.image_ids([str(tmp_path / "cat.jpg")], need_ids=True)
  with pytest.raises(ValueError, match=r"cat\.jpg: not an image of .*test_coco\.json"):
    predict.image_ids([str(tmp_path / "cat.jpg")], ann)
  assert predict.image_ids([str(tmp_path / "cat.jpg")]) == {str(tmp_path / "cat.jpg"): 1}


def _main(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "mipnet_jax.main", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def test_cli_export_then_predict_with_the_bundle_on_a_whole_image(served_model, predictor, coco,
                                                                   tmp_path):
  checkpoint = served_model[1]
  done = _main(f"--config=configs/{CONFIG}.py:quick", f"--config.eval.checkpoint={checkpoint}",
               "--mode=export", f"--workdir={tmp_path}", "--export_onnx")
  assert done.returncode == 0, done.stderr
  line = json.loads(done.stdout.strip().splitlines()[-1])
  assert line["bundle"] == str(tmp_path / "export") and line["platforms"] == ["cpu"]
  assert line["onnx_bytes"] == (tmp_path / "export" / "model.onnx").stat().st_size > 0
  done = _main(f"--bundle={tmp_path / 'export'}", "--mode=predict",
               f"--images={coco / '000000040083.jpg'}", f"--output_dir={tmp_path / 'out'}")
  assert done.returncode == 0, done.stderr
  line = json.loads(done.stdout.strip().splitlines()[-1])
  results = json.loads((tmp_path / "out" / "predictions.json").read_text())
  assert line == {"predictions": str(tmp_path / "out" / "predictions.json"), "images": 1,
                  "poses": len(results), "boxes": "whole images", "weights": checkpoint,
                  "output_dir": str(tmp_path / "out"), "skipped": {}}
  # The bundle of the checkpoint predicts what the in-process Predictor of it does, up to
  # float32 rounding: main sets the XLA:CPU flags of the architecture (core/runtime.py),
  # this process does not.
  image = read_image(str(coco / "000000040083.jpg"))
  want = predict.pose_results(predictor(image), 40083)
  assert [(r["lambda"], r["image_id"]) for r in results] == [(w["lambda"], 40083) for w in want]
  np.testing.assert_allclose([r["score"] for r in results], [w["score"] for w in want],
                             rtol=1e-5)
  np.testing.assert_allclose([r["keypoints"] for r in results], [w["keypoints"] for w in want],
                             rtol=1e-5, atol=1e-3)
  assert (tmp_path / "out" / "000000040083.png").is_file()
  # The bundle's model.onnx under onnxruntime: the same poses within float32 rounding.
  done = _main(f"--bundle={tmp_path / 'export'}", "--mode=predict", "--runtime=onnx",
               f"--images={coco / '000000040083.jpg'}", f"--output_dir={tmp_path / 'onnx'}")
  assert done.returncode == 0, done.stderr
  onnx_results = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
  assert [r["lambda"] for r in onnx_results] == [r["lambda"] for r in results]
  np.testing.assert_allclose([r["keypoints"] for r in onnx_results],
                             [r["keypoints"] for r in results], rtol=1e-4, atol=1e-3)
  done = _main(f"--config=configs/{CONFIG}.py:quick", "--mode=export", "--runtime=onnx",
               f"--workdir={tmp_path / 'w'}")
  assert done.returncode == 1 and "--runtime=onnx runs an exported bundle: use it with " \
      "--mode=predict --bundle=DIR" in done.stderr


def test_cli_bad_inputs_are_one_line_errors(coco, tmp_path):
  done = _main(f"--config=configs/{CONFIG}.py:quick", "--mode=predict",
               f"--images={tmp_path}/*.jpg", f"--output_dir={tmp_path}")
  assert done.returncode == 2
  errors = [ln for ln in done.stderr.splitlines() if "Error" in ln]
  assert len(errors) == 1 and f"--images={tmp_path}/*.jpg: no image file matches" in errors[0]
  assert "Traceback" not in done.stderr


def test_predict_mode_checks_its_inputs_before_the_model_loads(load_config, coco, tmp_path):
  config = load_config(CONFIG, "quick")
  config.eval.checkpoint = str(tmp_path / "never_read")
  with pytest.raises(ValueError, match="no image file matches"):
    predict.predict_mode(config, None, str(tmp_path / "*.jpg"), str(tmp_path / "out"))
  dets = tmp_path / "dets.json"
  dets.write_text(json.dumps([{"image_id": 5, "category_id": 1, "bbox": [0, 0, 4, 4],
                               "score": 1.0}]))
  with pytest.raises(coco_format.AnnotationError, match=r"dets\.json: detection 0: field "
                                                        r"'image_id' 5 matches no file"):
    predict.predict_mode(config, None, str(coco / "000000000785.jpg"), str(tmp_path / "out"),
                         str(dets))
  assert not (tmp_path / "out").exists()


def test_predict_result_summary_is_one_json_line():
  result = predict.PredictResult(
      {"predictions": "/o/predictions.json", "images": "/o/images.json", "pngs": ["/o/1.png"]},
      1, 3, "whole images", "runs/x", "/o")
  assert result.summary() == (
      '{"predictions": "/o/predictions.json", "images": 1, "poses": 3, "boxes": "whole images", '
      '"weights": "runs/x", "output_dir": "/o", "skipped": {}}')


def test_bad_files_are_skipped_counted_and_listed(predictor, coco, tmp_path):
  """A truncated JPEG, a text file named .jpg and a .txt in the folder: the good images still
  get their poses, each bad file is counted by reason and listed in summary.json."""
  folder = tmp_path / "photos"
  folder.mkdir()
  good = coco / "000000000785.jpg"
  (folder / "000000000785.jpg").write_bytes(good.read_bytes())
  data = (coco / "000000040083.jpg").read_bytes()
  (folder / "000000040083.jpg").write_bytes(data[: len(data) // 2])
  (folder / "000000000001.jpg").write_text("not an image")
  (folder / "notes.txt").write_text("shot list")
  done = predict.run_predict(predictor, str(folder), str(tmp_path / "out"))
  want = predict.pose_results(predictor(read_image(str(good))), 785)
  assert json.loads(open(done.paths["predictions"]).read()) == json.loads(json.dumps(want))
  assert (done.images, done.poses) == (1, len(want))
  assert done.skipped == {"not an image file": 1, "truncated JPEG": 1,
                          "not a readable image": 1}
  summary = json.loads(open(done.paths["summary"]).read())
  assert summary["skipped_files"] == [
      {"file": str(folder / "notes.txt"), "reason": "not an image file"},
      {"file": str(folder / "000000000001.jpg"), "reason": "not a readable image"},
      {"file": str(folder / "000000040083.jpg"), "reason": "truncated JPEG"}]
  assert {k: summary[k] for k in ("images", "poses", "skipped")} == {
      "images": 1, "poses": len(want), "skipped": done.skipped}
  assert [os.path.basename(p) for p in done.paths["pngs"]] == ["000000000785.png"]
  assert [t["id"] for t in json.loads(open(done.paths["images"]).read())] == [785]
