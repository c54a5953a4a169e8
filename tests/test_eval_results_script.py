"""scripts/eval_results.py run as a user runs it: the table, the last-line JSON, bad input."""

import json
import pathlib
import subprocess
import sys

from mipnet_jax.eval.metrics import evaluate_file

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "eval_results.py"
CROWD_DIR = "crowdpose/xtcocoapi_examples"


def run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_crowdpose_example_last_line_is_json(shared_data):
  proc = run("--dataset", "crowdpose",
             "--annotations", str(shared_data / CROWD_DIR / "example_crowdpose_val.json"),
             "--results", str(shared_data / CROWD_DIR / "example_crowdpose_preds.json"))
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  metrics = json.loads(lines[-1])
  assert list(metrics) == ["AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy",
                           "AP_medium", "AP_hard"]
  # Values of xtcocotools' keypoints_crowd evaluation (tests/eval/metrics/
  # test_crowdpose_metric.py).
  assert (metrics["AP_easy"], metrics["AP_medium"], metrics["AP_hard"]) == (1.0, 0.9802, 0.4116)
  assert metrics["AP"] == 0.7877215935879303
  assert metrics == evaluate_file(
      "crowdpose", str(shared_data / CROWD_DIR / "example_crowdpose_val.json"),
      str(shared_data / CROWD_DIR / "example_crowdpose_preds.json"))
  # Only our table before it: pycocotools' progress lines stay out of stdout.
  assert len(lines) == 1 + 1 + len(metrics) + 1
  assert lines[1].split() == ["metric", "value"]
  assert [line.split() for line in lines[2:-1]] == [[k, f"{v:.4f}"] for k, v in metrics.items()]
  assert lines[2].split() == ["AP", "0.7877"]
  assert "Accumulating" not in proc.stdout and "index created" not in proc.stdout


def test_coco_example(shared_data):
  proc = run("--dataset", "coco", "--annotations", str(shared_data / "coco/test_coco.json"),
             "--results", str(shared_data / "coco/xtcocoapi_examples/example_coco_preds.json"),
             "--verbose")
  assert proc.returncode == 0, proc.stderr
  metrics = json.loads(proc.stdout.strip().splitlines()[-1])
  assert list(metrics) == ["AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM",
                           "ARL"]
  assert metrics["AP"] == 0.8608896054440609
  assert metrics == evaluate_file(
      "coco", str(shared_data / "coco/test_coco.json"),
      str(shared_data / "coco/xtcocoapi_examples/example_coco_preds.json"))
  assert "Accumulating evaluation results" in proc.stderr     # --verbose: pycocotools on stderr


def test_bad_input_exits_non_zero_with_one_line(shared_data, tmp_path):
  preds = json.loads((shared_data / CROWD_DIR / "example_crowdpose_preds.json").read_text())
  preds[3]["keypoints"] = preds[3]["keypoints"][:-3]
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(preds))
  proc = run("--dataset", "crowdpose",
             "--annotations", str(shared_data / CROWD_DIR / "example_crowdpose_val.json"),
             "--results", str(path))
  assert proc.returncode == 2
  assert proc.stdout == ""
  assert proc.stderr.strip() == (
      f"eval_results.py: error: {path}: entry 3 (image_id {preds[3]['image_id']}): field "
      "'keypoints' has 39 values, expected 42 (3 x 14 keypoints of the dataset)")


def test_other_joints_subset_and_area_rule(shared_data, tmp_path):
  """An OCPose-style file (12 limb joints, declared with --keypoints limbs) and a COCO file
  scored on its limbs (--joints limbs), both with the 0.53 box area: equal to pycocotools on
  hand-cut ground truth; a bad joint name is one line."""
  from conftest import pycocotools_limb_sigmas, pycocotools_stats
  data = json.loads((shared_data / "coco" / "test_coco.json").read_text())
  preds = json.loads((shared_data / "coco/xtcocoapi_examples/example_coco_preds.json").read_text())
  limb_preds = [dict(p, keypoints=p["keypoints"][15:]) for p in preds]
  for ann in data["annotations"]:
    ann["keypoints"] = ann["keypoints"][15:]
    ann["num_keypoints"] = sum(v > 0 for v in ann["keypoints"][2::3])
  gt12, res12 = tmp_path / "gt12.json", tmp_path / "res12.json"
  gt12.write_text(json.dumps(data))
  res12.write_text(json.dumps(limb_preds))
  want = pycocotools_stats(str(gt12), str(res12), pycocotools_limb_sigmas(), area_factor=0.53)
  ocpose = run("--dataset", "ocpose", "--keypoints", "limbs", "--area_rule", "box_0.53",
               "--annotations", str(gt12), "--results", str(res12))
  subset = run("--dataset", "coco", "--joints", "limbs", "--area_rule", "box_0.53",
               "--annotations", str(shared_data / "coco" / "test_coco.json"),
               "--results", str(res12))
  for proc in (ocpose, subset):
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout.strip().splitlines()[-1]).values()) == want
  bad = run("--dataset", "coco", "--joints", "limbs,tail", "--annotations", str(gt12),
            "--results", str(res12))
  assert bad.returncode == 2 and bad.stderr.strip() == (
      "eval_results.py: error: joints: 'tail' is not a joint of coco (nose, left_eye, "
      "right_eye, left_ear, right_ear, left_shoulder, right_shoulder, left_elbow, right_elbow, "
      "left_wrist, right_wrist, left_hip, right_hip, left_knee, right_knee, left_ankle, "
      "right_ankle)")
