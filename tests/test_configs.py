"""mipnet_jax/experiments.py: every experiment config holds the reference's values (the HRNet /
SimpleBaseline yamls and the MIPNet code) and its model initialises (jax.eval_shape, no
compile); config arguments; renamed fields."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from mipnet_jax import experiments
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

CONFIGS = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.py"))
TABLE2 = [f"{a}_coco_{s}" for a in ("hrnet_w32", "hrnet_w48", "sbl_r50", "sbl_r101", "sbl_r152")
          for s in ("256x192", "384x288")]
TABLE5 = [f"{a}_crowdpose_{s}" for a in ("hrnet_w32", "hrnet_w48") for s in ("256x192", "384x288")]
VITPOSE = [f"vitpose_{s}_coco_256x192" for s in "sblh"]

# The reference yamls (HRNet experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml and kin,
# SimpleBaseline res50_256x192_d256x3_adam_lr1e-3.yaml and kin): IMAGE_SIZE, HEATMAP_SIZE and
# SIGMA per input size (the yamls list them as width, height; here height, width) ...
INPUT = {"256x192": dict(image_hw=(256, 192), heatmap_hw=(64, 48), sigma=2.0),
         "384x288": dict(image_hw=(384, 288), heatmap_hw=(96, 72), sigma=3.0)}
# ... and per family: colour order, augmentation (SCALE_FACTOR, ROT_FACTOR, PROB_HALF_BODY),
# schedule (END_EPOCH, LR_STEP, LR_FACTOR), 32 boxes per GPU x 4 GPUs, Adam at 1e-3.
FAMILY = {
    "hrnet": dict(color="rgb", scale_factor=0.35, rotation_factor=45.0, half_body_prob=0.3,
                  total_epochs=210, decay_epochs=(170, 200)),
    "simple_baseline": dict(color="bgr", scale_factor=0.30, rotation_factor=40.0,
                            half_body_prob=0.0, total_epochs=140, decay_epochs=(90, 120)),
    # ViTPose_{small,base,large,huge}_coco_256x192.py: TopDownGetRandomScaleRotation
    # (rot_factor=40, scale_factor=0.5), TopDownHalfBodyTransform(prob_half_body=0.3),
    # lr_config step=[170, 200], total_epochs=210.
    "vitpose": dict(color="rgb", scale_factor=0.5, rotation_factor=40.0, half_body_prob=0.3,
                    total_epochs=210, decay_epochs=(170, 200)),
}
# The recipes: the yamls' Adam at 1e-3, 32 x 4 boxes; ViTPose's AdamW(lr=5e-4, betas
# (0.9, 0.999), weight_decay=0.1), grad_clip max_norm 1, linear warm-up 500 iterations from
# 0.001, 64 x 8 boxes, and test_cfg use_udp=True.
RECIPE = {
    "hrnet": dict(name="adam", learning_rate=1e-3, weight_decay=0.0, grad_clip_norm=0.0,
                  layer_decay=1.0, warmup_steps=0, batch_size=128, udp=False),
    "vitpose": dict(name="adamw", learning_rate=5e-4, weight_decay=0.1, grad_clip_norm=1.0,
                    warmup_steps=500, warmup_ratio=0.001, batch_size=512, udp=True),
}
RECIPE["simple_baseline"] = RECIPE["hrnet"]
ARCH = {"hrnet_w32": ("hrnet", dict(width=32)), "hrnet_w48": ("hrnet", dict(width=48)),
        "sbl_r50": ("simple_baseline", dict(depth=50)),
        "sbl_r101": ("simple_baseline", dict(depth=101)),
        "sbl_r152": ("simple_baseline", dict(depth=152)),
        # backbone_cfg (embed_dim, depth, num_heads, drop_path_rate) and paramwise_cfg's
        # layer_decay_rate of the official configs.
        "vitpose_s": ("vitpose", dict(embed_dim=384, depth=12, num_heads=12,
                                      drop_path_rate=0.1, layer_decay=0.9)),
        "vitpose_b": ("vitpose", dict(embed_dim=768, depth=12, num_heads=12,
                                      drop_path_rate=0.3, layer_decay=0.75)),
        "vitpose_l": ("vitpose", dict(embed_dim=1024, depth=24, num_heads=16,
                                      drop_path_rate=0.5, layer_decay=0.8)),
        "vitpose_h": ("vitpose", dict(embed_dim=1280, depth=32, num_heads=16,
                                      drop_path_rate=0.55, layer_decay=0.85))}
EVAL_SPLITS = {"coco": {"coco_val", "coco_test_dev", "ochuman_val", "ochuman_test",
                        "ocpose_test", "crowdpose_test"},
               "crowdpose": {"crowdpose_val", "crowdpose_test"}, "custom": {"custom_val"},
               "synthetic": {"synthetic_val", "synthetic_val_pairs", "synthetic_val_shared",
                             "synthetic_val_shared_tight"}}


def parse_name(name: str) -> tuple[str, str, str]:
  """'hrnet_w32_coco_256x192' -> ('hrnet_w32', 'coco', '256x192')."""
  rest, size = name.rsplit("_", 1)
  arch, dataset = rest.rsplit("_", 1)
  return arch, dataset, size


def test_every_paper_row_has_a_config():
  assert set(TABLE2 + TABLE5 + VITPOSE) <= set(CONFIGS)
  assert set(CONFIGS) == set(TABLE2 + TABLE5 + VITPOSE) | {"hrnet_w32_synthetic_256x192",
                                                           "hrnet_w32_custom_256x192"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_holds_the_reference_values(load_config, name):
  arch, dataset, size = parse_name(name)
  family, fields = ARCH[arch]
  cfg = load_config(name)
  assert cfg.experiment == name
  assert (tuple(cfg.data.image_hw), tuple(cfg.data.heatmap_hw), cfg.data.sigma) == (
      INPUT[size]["image_hw"], INPUT[size]["heatmap_hw"], INPUT[size]["sigma"])
  want = FAMILY[family]
  assert {k: cfg.data[k] for k in ("color", "scale_factor", "rotation_factor",
                                   "half_body_prob")} == {k: want[k] for k in (
                                       "color", "scale_factor", "rotation_factor",
                                       "half_body_prob")}
  assert (cfg.schedule.total_epochs, tuple(cfg.schedule.decay_epochs)) == (
      want["total_epochs"], want["decay_epochs"])
  assert (cfg.schedule.decay_factor, cfg.schedule.warmup_epochs) == (0.1, 0)
  recipe = RECIPE[family]
  assert (cfg.data.batch_size, cfg.data.flip, cfg.data.udp) == (
      recipe["batch_size"], True, recipe["udp"])
  assert {k: cfg.optim[k] for k in ("name", "learning_rate", "weight_decay",
                                    "grad_clip_norm")} == {k: recipe[k] for k in (
                                        "name", "learning_rate", "weight_decay",
                                        "grad_clip_norm")}
  assert tuple(cfg.optim.betas) == (0.9, 0.999)
  assert cfg.schedule.warmup_steps == recipe["warmup_steps"]
  assert cfg.optim.layer_decay == fields.get("layer_decay", 1.0)
  assert cfg.model.name == family and all(cfg.model[k] == v for k, v in fields.items()
                                          if k != "layer_decay")
  assert cfg.model.num_keypoints == {"crowdpose": 14, "custom": 5}.get(dataset, 17)
  # MIPNet: N = 2, MIMBs after stages 3 and 4 (the authors' SE_MODULES), reduction 4;
  # MIPNet-ViT also after half of the blocks.
  assert cfg.num_instances == 2 and load_config(name, "baseline").num_instances == 1
  slots = (False, True, True, True) if family == "vitpose" else (False, False, True, True)
  assert (tuple(cfg.model.mimb_slots), cfg.model.mimb_reduce) == (slots, 4)
  assert set(cfg.eval_data) == EVAL_SPLITS[dataset]
  # The protocol: gamma^lambda with the paper's 0.9, OKS-NMS at 0.9 (CrowdPose: none), joints
  # above 0.2 rescore, flip test, ground-truth boxes unless a row says detections.
  ev = cfg.eval
  assert (ev.gamma, ev.gamma_mode, ev.in_vis_thre, ev.nms_threshold, ev.flip, ev.boxes) == (
      0.9, "power", 0.2, 0.9, True, "gt")
  assert ev.nms == ("none" if dataset == "crowdpose" else "oks")
  assert (ev.keep_lambda, ev.num_instances, ev.decode) == (-1, 0, "quarter")


@pytest.mark.parametrize("name", CONFIGS)
def test_config_initialises_its_model(load_config, name):
  cfg = load_config(name)
  h, w = cfg.data.image_hw
  model = build_model(cfg.model, cfg.num_instances)
  v = abstract_variables(model, (h, w))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, 2, method=model.predict_instances),
                       v, jax.ShapeDtypeStruct((3, h, w, 3), jnp.float32))
  assert out.shape == (3, 2, *INPUT[parse_name(name)[2]]["heatmap_hw"],
                       cfg.model.num_keypoints)


def test_config_arguments():
  c = experiments.experiment("hrnet_w32", "coco", (256, 192), "quick,n=3,bf16")
  assert c.num_instances == 3 and c.model.dtype == "bfloat16"
  assert c.experiment == "hrnet_w32_coco_256x192_quick"
  assert (c.model.width, c.model.stem_width, tuple(c.model.stage_modules)) == (8, 16, (1, 1, 1))
  assert (tuple(c.data.image_hw), tuple(c.data.heatmap_hw), c.data.sigma) == ((128, 96),
                                                                              (32, 24), 2.0)
  assert (c.model.mimb_reduce, c.data.batch_size, c.eval.batch_size) == (1, 4, 8)
  assert (c.schedule.total_epochs, tuple(c.schedule.decay_epochs)) == (2, (1,))
  s = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  assert (s.data.batch_size, s.eval.batch_size, s.schedule.total_epochs) == (32, 64, 10)
  assert s.eval.splits == ("synthetic_val,synthetic_val_pairs,synthetic_val_shared,"
                           "synthetic_val_shared_tight")
  assert experiments.experiment("hrnet_w32", "coco", (256, 192)).eval.splits == "coco_val"
  f = experiments.experiment("hrnet_w48", "coco", (384, 288), "finetune")
  assert f.schedule.total_epochs == 110 and tuple(f.schedule.decay_epochs) == (70, 100)
  b = experiments.experiment("sbl_r50", "coco", (256, 192), "baseline,bf16")
  assert (b.num_instances, b.model.dtype) == (1, "bfloat16")
  with pytest.raises(ValueError, match="unknown config argument 'fast'"):
    experiments.experiment("hrnet_w32", "coco", (256, 192), "fast")
  with pytest.raises(ValueError, match="unknown config argument 'n=x'"):
    experiments.experiment("hrnet_w32", "coco", (256, 192), "n=x")


def test_renamed_fields():
  assert experiments.RENAMED == {"evals": "eval_data"}
  assert experiments.renamed_field("evals") == "eval_data"
  assert experiments.renamed_field("evals.coco_val.det_file") == "eval_data.coco_val.det_file"
  for name in ("eval", "eval.splits", "evalsx", "eval_data.coco_val", "data.evals"):
    assert experiments.renamed_field(name) is None, name
  config = experiments.experiment("hrnet_w32", "coco", (256, 192))
  experiments.check_renamed(config)                      # a current config passes
  config.unlock()
  config.evals = ml_collections.ConfigDict({"coco_val": {}})
  with pytest.raises(ValueError) as info:
    experiments.check_renamed(config)
  assert str(info.value) == "config.evals was renamed to config.eval_data"
