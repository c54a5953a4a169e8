"""Poses for images: the Predictor API (config or bundle), the predict mode's files on the
shared COCO sample, image / detection matching and its one-line errors, the drawing."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from _tiny_model import tiny
from conftest import REPO_ROOT
from mipnet_jax.serve import export, predict
from mipnet_jax.data import coco_format
from mipnet_jax.data.image import read_image

CONFIG = "hrnet_w32_synthetic_256x192"


@pytest.fixture(scope="module")
def model_files(load_config, tmp_path_factory):
  """(config, checkpoint folder, bundle folder) of a tiny N=2 model with random weights."""
  config = load_config(CONFIG, "quick")
  folder = tmp_path_factory.mktemp("predict_model")
  model, variables, checkpoint = tiny(config, folder / "ckpt")
  export.export_bundle(config, model, variables, str(folder / "bundle"), "random")
  return config, checkpoint, str(folder / "bundle")


@pytest.fixture(scope="module")
def predictor(model_files):
  config, checkpoint, _ = model_files
  return predict.Predictor.from_config(config, checkpoint)


@pytest.fixture
def coco(shared_data):
  root = shared_data / "coco"
  names = ("test_coco.json", "test_coco_det_AP_H_56.json")
  if not all((root / n).is_file() for n in names):
    pytest.skip(f"{root} lacks {names} (the shared COCO sample)")
  return root


def test_predict_on_the_coco_sample_writes_results_pycocotools_reads(predictor, coco, tmp_path):
  from pycocotools.coco import COCO as CocoApi
  done = predict.run_predict(predictor, str(coco / "*.jpg"), str(tmp_path / "a"),
                             str(coco / "test_coco_det_AP_H_56.json"), str(coco / "test_coco.json"))
  results = json.loads(open(done["paths"]["predictions"]).read())
  ids = {785, 40083, 196141, 197388}
  assert done["images"] == 4 and done["poses"] == len(results) > 0
  assert {r["image_id"] for r in results} <= ids and {r["lambda"] for r in results} <= {0, 1}
  assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in results)
  gt = CocoApi(str(coco / "test_coco.json"))
  assert len(gt.loadRes(done["paths"]["predictions"]).getAnnIds()) == len(results)
  table = json.loads(open(done["paths"]["images"]).read())
  assert {t["id"] for t in table} == ids
  for png, row in zip(done["paths"]["pngs"], table):
    assert os.path.basename(png) == row["file_name"].replace(".jpg", ".png")
    assert cv2.imread(png).shape == (row["height"], row["width"], 3)
  # COCO-style file names give the same ids without --annotations, hence the same results.
  again = predict.run_predict(predictor, str(coco), str(tmp_path / "b"),
                              str(coco / "test_coco_det_AP_H_56.json"))
  assert json.loads(open(again["paths"]["predictions"]).read()) == results


def test_bundle_and_config_predict_the_same_poses_on_a_whole_image(model_files, predictor, coco):
  image = read_image(str(coco / "000000000785.jpg"))
  bundled = predict.Predictor.from_bundle(model_files[2])
  a, b = predictor(image), bundled(image)
  assert len(a) == len(b) > 0 and {p.lam for p in a} <= {0, 1}
  for p, q in zip(a, b):
    np.testing.assert_array_equal(p.keypoints, q.keypoints)
    assert (p.score, p.lam) == (q.score, q.lam)
    np.testing.assert_array_equal(p.box, [0, 0, 640, 425])
  assert bundled.merge == predictor.merge and bundled.weights == "random"


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


def test_draw_marks_secondary_instances(predictor):
  rng = np.random.default_rng(0)
  kp = np.concatenate([rng.uniform(20, 100, (17, 2)), np.ones((17, 1))], 1)
  pose = predict.Pose(kp, 0.9, 0, np.zeros(4), 1.0)
  image = np.zeros((120, 120, 3), np.uint8)
  own = predictor.draw(image, [pose])
  other = predictor.draw(image, [predict.Pose(kp, 0.9, 1, np.zeros(4), 1.0)])
  assert image.max() == 0 and own.any() and other.any()
  assert (own > 0).sum() > (other > 0).sum()             # dotted limbs cover less
  assert tuple(own[int(kp[0, 1]), int(kp[0, 0])]) == predict.visualize.instance_color(0)
  assert not predictor.draw(image, [pose], min_score=0.95).any()


def _main(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "mipnet_jax.main", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def test_cli_export_then_predict_with_the_bundle_on_a_whole_image(model_files, coco, tmp_path):
  checkpoint = model_files[1]
  done = _main(f"--config=configs/{CONFIG}.py:quick", f"--config.eval.checkpoint={checkpoint}",
               "--mode=export", f"--workdir={tmp_path}")
  assert done.returncode == 0, done.stderr
  line = json.loads(done.stdout.strip().splitlines()[-1])
  assert line["bundle"] == str(tmp_path / "export") and line["platforms"] == ["cpu"]
  done = _main(f"--bundle={tmp_path / 'export'}", "--mode=predict",
               f"--images={coco / '000000040083.jpg'}", f"--output_dir={tmp_path / 'out'}")
  assert done.returncode == 0, done.stderr
  line = json.loads(done.stdout.strip().splitlines()[-1])
  assert line["images"] == 1 and line["boxes"] == "whole images"
  results = json.loads((tmp_path / "out" / "predictions.json").read_text())
  assert {r["image_id"] for r in results} == {40083}
  assert (tmp_path / "out" / "000000040083.png").is_file()


def test_cli_bad_inputs_are_one_line_errors(coco, tmp_path):
  done = _main(f"--config=configs/{CONFIG}.py:quick", "--mode=predict",
               f"--images={tmp_path}/*.jpg", f"--output_dir={tmp_path}")
  assert done.returncode == 2
  errors = [ln for ln in done.stderr.splitlines() if "Error" in ln]
  assert len(errors) == 1 and f"--images={tmp_path}/*.jpg: no image file matches" in errors[0]
  assert "Traceback" not in done.stderr
