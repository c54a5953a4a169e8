"""A user's own keypoint dataset from a config alone (configs/hrnet_w32_custom_256x192.py, the
worked example of datasets/custom/README.md written by scripts/make_custom_example.py): 5
joints with one flip pair train for a few steps and evaluate; each bad declaration is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO_ROOT, load_module, pycocotools_stats
from mipnet_jax import main
from mipnet_jax.core.meta import MetaError
from mipnet_jax.data import inputs

EXAMPLE = load_module(REPO_ROOT / "scripts" / "make_custom_example.py", "make_custom_example")
SIGMAS = (0.079, 0.079, 0.107, 0.062, 0.062)


@pytest.fixture(scope="module")
def example_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("custom")
  EXAMPLE.write_split(str(root), "train", 8)
  EXAMPLE.write_split(str(root), "val", 4)
  return root


@pytest.fixture
def config(load_config, example_root):
  c = load_config("hrnet_w32_custom_256x192", "quick")
  c.data.root = str(example_root)
  c.data.batch_size = 4
  c.train.update(total_steps=3, log_every_steps=1, checkpoint_every_steps=3)
  return c


def test_example_file_converts_the_coco_joints():
  coco = [0.0] * 51
  coco[0:3] = [10, 20, 2]                          # nose -> head
  coco[15:21] = [30, 40, 2, 50, 60, 1]             # shoulders -> neck, their midpoint, v = 1
  coco[33:39] = [70, 80, 2, 0, 0, 0]               # hips: one unlabelled -> pelvis unlabelled
  coco[27:30] = [90, 95, 2]                        # left wrist -> left hand
  assert EXAMPLE.convert_keypoints(coco) == [10, 20, 2, 40, 50, 1, 0, 0, 0, 90, 95, 2, 0, 0, 0]


def test_meta_comes_from_the_config(config):
  meta = inputs.model_meta(config)
  assert meta.keypoint_names == ("head", "neck", "pelvis", "left_hand", "right_hand")
  assert meta.flip_pairs == ((3, 4),) and meta.sigmas == SIGMAS
  assert meta.upper_body_ids == (0, 1, 3, 4) and meta.lower_body_ids == (2,)
  np.testing.assert_array_equal(meta.flip_permutation, [0, 1, 2, 4, 3])
  assert config.model.num_keypoints == 5 and list(config.eval_data) == ["custom_val"]


def test_trains_and_evaluates_from_the_config(config, tmp_path, example_root):
  done = main.train(config, str(tmp_path / "run"), with_eval=True)
  assert done.step == 3 and [r.protocol.split for r in done.evals] == ["custom_val"]
  result = done.evals[0]
  assert result.protocol.meta.name == "custom" and result.protocol.joints.sigmas == SIGMAS
  results = json.loads(open(result.paths["results"]).read())
  assert results and all(len(r["keypoints"]) == 15 for r in results)
  # The metrics are pycocotools' with the declared sigmas on the run's own results file.
  gt = str(example_root / "annotations" / "person_keypoints_val.json")
  stats = pycocotools_stats(gt, result.paths["results"], sigmas=SIGMAS)
  assert list(result.metrics.values()) == stats


@pytest.mark.parametrize("change,message", [
    (dict(flip_pairs=(("left_hand", "right_hand"), (2, 7))),
     "config.data.keypoints: flip_pairs[1]: joint 7 out of range for 5 joints"),
    (dict(sigmas=(0.079, 0.079, 0.107, 0.062)),
     "config.data.keypoints: sigmas has 4 values for 5 joints"),
    (dict(upper_body=("head", "nek")),
     "config.data.keypoints: upper_body: unknown joint name 'nek' (joints: head, neck, pelvis, "
     "left_hand, right_hand)"),
    (dict(skeleton=(("head", "tail"),)),
     "config.data.keypoints: skeleton[0]: unknown joint name 'tail' (joints: head, neck, "
     "pelvis, left_hand, right_hand)"),
    (dict(sigmas=()),
     "config.data.keypoints: sigmas not given and no known OKS sigma for pelvis, left_hand, "
     "right_hand; declare one sigma per joint"),
    (dict(names=("head", "neck", "head", "left_hand", "right_hand")),
     "config.data.keypoints: joint names repeat: head"),
])
def test_bad_declarations_are_one_line_errors(config, change, message):
  config.data.keypoints.update(change)
  with pytest.raises(MetaError) as info:
    inputs.model_meta(config)
  assert str(info.value) == message


def test_joint_count_must_match_the_model(config):
  config.model.num_keypoints = 17
  with pytest.raises(ValueError, match=r"^config.model.num_keypoints=17 but config.data "
                                       r"\(custom\) has 5 joints$"):
    inputs.model_meta(config)


def test_file_with_other_joints_is_a_one_line_error(config, tmp_path, example_root):
  data = json.loads((example_root / "annotations" / "person_keypoints_val.json").read_text())
  data["annotations"][0]["keypoints"] += [1.0, 2.0, 2]
  bad = tmp_path / "val6.json"
  bad.write_text(json.dumps(data))
  config.data.val_ann = str(bad)
  config.eval_data.custom_val.ann = str(bad)
  ann_id = data["annotations"][0]["id"]
  with pytest.raises(ValueError) as info:
    inputs.load_split(config.data, "val")
  assert str(info.value) == (f"{bad}: annotation {ann_id}: field 'keypoints' holds 6 joints, "
                             f"but custom declares 5 (head, neck, pelvis, left_hand, right_hand)")


def test_unknown_dataset_without_joints_names_the_block(config):
  config.data.keypoints.names = ()
  with pytest.raises(ValueError, match=r"^config.data: dataset 'custom' is not built in "
                                       r"\(coco, crowdpose, ochuman, synthetic\); declare its "
                                       r"joints in config.data.keypoints.names$"):
    inputs.model_meta(config)



def test_declared_joints_survive_the_bundle_config(config):
  """An exported bundle stores the config as JSON; Predictor.from_bundle rebuilds the meta
  from that dict (lists for tuples) through the same function."""
  as_json = json.loads(json.dumps(config.to_dict()))
  assert inputs.model_meta(as_json) == inputs.model_meta(config)
