"""Evaluators (big_vision's contract): what ``run`` yields, where it writes, what it stamps; one
evaluator per configured split, config errors before any model runs; ``--mode=eval``'s
``run_eval`` with a checkpoint."""

import json
import os

import pytest

from conftest import tiny_checkpoint
from mipnet_jax.eval import evaluators
from mipnet_jax.eval import run as evaluate
from mipnet_jax.eval.metrics import COCO_METRICS
from mipnet_jax.eval.run import EvalResult




def test_keypoint_evaluator_is_an_evaluator(coco_config):
  evaluator = evaluators.KeypointEvaluator(coco_config, "coco_val", None, "/tmp/unused")
  assert isinstance(evaluator, evaluators.Evaluator)
  assert evaluator.result is None and evaluator.name == "coco_val"
  assert not isinstance(object(), evaluators.Evaluator)
  assert evaluators.EVALUATORS == {"keypoints": evaluators.KeypointEvaluator}


def test_run_yields_the_metrics_and_lambda0_and_writes_under_the_step(coco_config, tmp_path):
  model, variables, _ = tiny_checkpoint(coco_config, tmp_path / "ckpt")
  out_dir = str(tmp_path / "eval")
  [evaluator] = evaluators.from_config(coco_config, model, out_dir, with_lambda0=True,
                                       show_progress=False)
  assert (evaluator.name, evaluator.out_dir, evaluator.with_lambda0) == ("coco_val", out_dir,
                                                                         True)
  pairs = list(evaluator.run(variables, step=7))
  result = evaluator.result
  assert isinstance(result, EvalResult)
  assert [name for name, _ in pairs] == list(COCO_METRICS) + ["AP_lambda0"]
  assert dict(pairs[:-1]) == result.metrics
  # AP_lambda0: the lambda=0 mode re-scored from the same candidates.
  single = result.protocol.with_postprocess(keep_lambda=0)
  want = evaluate.compute_metrics(evaluate.score_candidates(result.candidates, single), single)
  assert pairs[-1] == ("AP_lambda0", want["AP"]) and result.metrics_lambda0 == want
  # Files under OUT/step_7, stamped with the training step as the weights.
  tag = "coco_val_gt_N2_merged"
  step_dir = tmp_path / "eval" / "step_7"
  assert sorted(os.listdir(step_dir)) == sorted(
      [f"results_{tag}.json", f"metrics_{tag}.json", f"table_{tag}.txt",
       f"candidates_{tag}.npz"])
  assert result.paths["results"] == str(step_dir / f"results_{tag}.json")
  stamp = json.loads((step_dir / f"metrics_{tag}.json").read_text())["protocol"]
  assert stamp["weights"] == result.protocol.weights == "training step 7"
  assert (stamp["num_instances"], stamp["keep_lambda"]) == (2, None)
  assert json.loads((step_dir / f"results_{tag}.json").read_text()) == json.loads(json.dumps(
      evaluate.score_candidates(result.candidates, result.protocol)))

  # Without a step: the folder itself and the weights given; without lambda=0: metrics only.
  evaluator.with_lambda0 = False
  again = dict(evaluator.run(variables, weights="my weights"))
  assert list(again) == list(COCO_METRICS) and again == result.metrics    # same variables
  assert evaluator.result.metrics_lambda0 is None
  assert evaluator.result.paths["results"] == str(tmp_path / "eval" / f"results_{tag}.json")
  assert evaluator.result.protocol.weights == "my weights"


def test_from_config_checks_every_split_before_any_model_runs(coco_config, tmp_path):
  coco_config.eval.splits = "coco_val,ochuman_val"
  made = evaluators.from_config(coco_config, None, str(tmp_path))
  assert [e.name for e in made] == ["coco_val", "ochuman_val"]
  assert all(type(e) is evaluators.KeypointEvaluator and not e.with_lambda0 for e in made)
  coco_config.eval.splits = "coco_val,nope"
  with pytest.raises(ValueError, match=r"^config.eval.splits: 'nope' is not in "
                                       r"config.eval_data \("):
    evaluators.from_config(coco_config, None, str(tmp_path))    # no model: nothing ran
  coco_config.eval.splits = "ochuman_test,coco_val"
  coco_config.eval.boxes = "detections"                         # ochuman_test has no det_file
  with pytest.raises(ValueError, match="config.eval_data.ochuman_test.det_file is empty"):
    evaluators.from_config(coco_config, None, str(tmp_path))
  coco_config.eval.update(boxes="gt", splits="coco_val")
  coco_config.eval_data.coco_val.type = "boxes"
  with pytest.raises(ValueError, match=r"^config.eval_data.coco_val.type: unknown evaluator "
                                       r"'boxes' \(known: keypoints\)$"):
    evaluators.from_config(coco_config, None, str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_run_eval_checks_the_splits_before_the_model_loads(coco_config, tmp_path):
  coco_config.eval.splits = "coco_val, nope"
  coco_config.eval.checkpoint = str(tmp_path / "missing")      # never read
  with pytest.raises(ValueError, match="'nope' is not in config.eval_data"):
    evaluators.run_eval(coco_config, str(tmp_path), show_progress=False)
  assert not (tmp_path / "eval").exists()


def test_run_eval_evaluates_the_checkpoint_on_every_split(coco_config, tmp_path):
  _, _, checkpoint = tiny_checkpoint(coco_config, tmp_path / "ckpt")
  coco_config.eval.checkpoint = checkpoint
  coco_config.eval.keep_lambda = 1
  [result] = evaluators.run_eval(coco_config, str(tmp_path / "work"), show_progress=False)
  assert result.protocol.weights == checkpoint and result.protocol.postprocess.keep_lambda == 1
  assert result.metrics_lambda0 is None                        # --mode=eval: asked for none
  assert result.paths["metrics"] == str(tmp_path / "work" / "eval" /
                                        "metrics_coco_val_gt_N2_lambda1.json")
  results = json.loads(open(result.paths["results"]).read())
  assert results == json.loads(json.dumps(
      evaluate.score_candidates(result.candidates, result.protocol)))
  # Every image of the sample has boxes, so NMS keeps at least its best lambda=1 pose.
  assert {r["image_id"] for r in results} == {785, 40083, 196141, 197388}
  assert len(results) == result.counts["results"]
