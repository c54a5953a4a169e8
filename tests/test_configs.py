"""Every experiment config builds and its model initialises (jax.eval_shape, no compile)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mipnet_jax import experiments
from mipnet_jax.models import build_model
from mipnet_jax.models.summary import abstract_variables

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

CONFIGS = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.py"))
TABLE2 = [f"{a}_coco_{s}" for a in ("hrnet_w32", "hrnet_w48", "sbl_r50", "sbl_r101", "sbl_r152")
          for s in ("256x192", "384x288")]
TABLE5 = [f"{a}_crowdpose_{s}" for a in ("hrnet_w32", "hrnet_w48") for s in ("256x192", "384x288")]


def test_every_paper_row_has_a_config():
  assert set(TABLE2 + TABLE5) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_initialises_its_model(load_config, name):
  cfg = load_config(name)
  h, w = cfg.data.image_hw
  assert tuple(cfg.data.heatmap_hw) == (h // 4, w // 4)
  assert cfg.data.sigma == (2.0 if h == 256 else 3.0)
  assert cfg.num_instances == 2 and load_config(name, "baseline").num_instances == 1
  assert cfg.model.num_keypoints == (14 if "crowdpose" in name else 17)
  model = build_model(cfg.model, cfg.num_instances)
  v = abstract_variables(model, (h, w))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, 2, method=model.predict_instances),
                       v, jax.ShapeDtypeStruct((3, h, w, 3), jnp.float32))
  assert out.shape == (3, 2, h // 4, w // 4, cfg.model.num_keypoints)
  expected_evals = ({"coco_val", "coco_test_dev", "ochuman_val", "ochuman_test"}
                    if "_coco_" in name
                    else {"synthetic_val", "synthetic_val_pairs"} if "_synthetic_" in name
                    else {"crowdpose_val", "crowdpose_test"})
  assert set(cfg.evals) == expected_evals


def test_config_arguments():
  c = experiments.experiment("hrnet_w32", "coco", (256, 192), "quick,n=3,bf16")
  assert c.num_instances == 3 and c.model.dtype == "bfloat16"
  assert c.model.width == 8 and tuple(c.data.image_hw) == (128, 96)
  f = experiments.experiment("hrnet_w48", "coco", (384, 288), "finetune")
  assert f.schedule.total_epochs == 110 and tuple(f.schedule.decay_epochs) == (70, 100)
  with pytest.raises(ValueError, match="unknown config argument 'fast'"):
    experiments.experiment("hrnet_w32", "coco", (256, 192), "fast")


def test_main_summary_json():
  cmd = [sys.executable, "-m", "mipnet_jax.main",
         "--config=configs/sbl_r50_coco_256x192.py:quick", "--mode=summary", "--json",
         "--config.model.mimb_reduce=2"]
  out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report["config"] == "sbl_r50_coco_256x192_quick"
  assert set(report["macs"]) == set(report["paper_gflops"]) == set(report["xla_flops"]) == {
      "1", "2", "3", "4"}
  assert report["macs"]["1"] < report["macs"]["2"] < report["macs"]["4"]
  # reduce=2 at base width 8: MIMB(64) before layer3 and MIMB(128) before layer4, each
  # 2*C*C/2 (F_ex) + 3*C/2 + 2*C/2 (Linear(2, C/2) and BN1d) + (C/2 + 1)*C (Linear(C/2, C)).
  mimb = lambda c: c * c + 3 * c // 2 + c + (c // 2 + 1) * c
  assert report["mimb_params"] == mimb(64) + mimb(128) == 31_392
