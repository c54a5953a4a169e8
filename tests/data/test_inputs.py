"""Config -> pipeline: the synthetic default end to end, raw-file errors, the data report."""

import json
import pathlib

import numpy as np
import pytest

from mipnet_jax.core import codec
from mipnet_jax.data import inputs


@pytest.fixture
def synthetic_config(load_config, tmp_path):
  c = load_config("hrnet_w32_synthetic_256x192", "quick")
  c.data.root = str(tmp_path / "syn")
  c.data.synthetic.update(num_train=6, num_val=2)
  return c


def test_synthetic_default_trains_without_downloads(synthetic_config):
  ds, loading, report = inputs.train_input(synthetic_config)
  assert not report.skipped and report.num_images == 6
  b = ds[0]
  n, (h, w) = synthetic_config.num_instances, synthetic_config.data.image_hw
  assert b["image"].shape == (loading.batch_size, h, w, 3)
  assert b["target_windows"].shape == (loading.batch_size, n, 17, 4)
  # The targets are those of the batch's joints (input-crop pixels, visibility).
  windows, weight = codec.heatmap_windows(b["joints"][..., :2], b["joints"][..., 2], (h, w),
                                          tuple(synthetic_config.data.heatmap_hw),
                                          synthetic_config.data.sigma)
  np.testing.assert_array_equal(b["target_weight"], weight)
  np.testing.assert_array_equal(b["target_windows"], windows)
  assert b["target_weight"].sum() > 0
  # Two processes split the global batch; their halves interleave into process 0 of 1.
  part, ploading, _ = inputs.train_input(synthetic_config, 1, 2)
  assert ploading.batch_size == loading.batch_size // 2
  np.testing.assert_array_equal(part[3]["ann_id"], ds[3]["ann_id"][1::2])
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    inputs.train_input(synthetic_config, 0, 3)


def test_data_report_of_a_config(synthetic_config):
  reports, errors = inputs.data_report(synthetic_config, decode_images=True)
  assert set(reports) == {"train", "val", "synthetic_val", "synthetic_val_pairs",
                          "synthetic_val_shared", "synthetic_val_shared_tight"} and not errors
  root = pathlib.Path(synthetic_config.data.root) / "annotations"
  for split, name in (("train", "train"), ("val", "val"), ("synthetic_val", "val"),
                      ("synthetic_val_pairs", "val_pairs"), ("synthetic_val_shared", "val_shared"),
                      ("synthetic_val_shared_tight", "val_shared")):
    ann = json.loads((root / f"person_keypoints_{name}.json").read_text())
    assert reports[split]["boxes"] == len(ann["annotations"]), split       # no person skipped
    assert reports[split]["images"] == len(ann["images"]), split
  assert reports["train"]["images"] == 6 and reports["val"]["images"] == 2
  assert reports["train"]["image_check"] == dict(checked=6, bad=0, errors={}, first_errors=[])


def test_missing_raw_files_name_the_expected_path(load_config, tmp_path):
  c = load_config("hrnet_w32_coco_256x192", "quick")
  c.data.root = str(tmp_path / "coco")
  with pytest.raises(FileNotFoundError, match=r"coco/annotations/person_keypoints_train2017"
                     r"\.json: coco train annotations expected here .*datasets/coco_keypoints"):
    inputs.train_input(c)
  reports, errors = inputs.data_report(c)
  assert not reports and set(errors) == {"train", "val", "coco_val", "coco_test_dev",
                                         "ochuman_val", "ochuman_test", "ocpose_test",
                                         "crowdpose_test"}
