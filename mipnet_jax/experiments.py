"""The paper's experiments as ml_collections configs (the files in configs/ call ``experiment``).

A config *selects*: architecture name and constructor arguments, data geometry, schedule.
Code owns everything derived from it (models.build_model turns ``config.model`` and
``config.num_instances`` into a module). ``num_instances`` is the one field that switches a
row of the supplementary's tables between the baseline (N=1: HRNet / SimpleBaseline) and
MIPNet (N=2 by default; 3 and 4 for Table 1).

Config argument (``--config=configs/X.py:ARG``), a comma-separated list of:
  quick       CPU-sized variant: tiny widths, 128x96 input, small batch (tests, demos);
  baseline    N=1, the plain HRNet / SimpleBaseline;
  n=K         N=K instances (2..4);
  bf16        bfloat16 compute (params and BN statistics stay float32);
  finetune    the authors' COCO MIPNet recipe: start from a COCO-trained baseline,
              110 epochs, lr drops at 70 and 100.
"""

from __future__ import annotations

import ml_collections

# Architecture presets: config.model fields (constructor kwargs of the flax module).
ARCHS = {
    "hrnet_w32": dict(name="hrnet", width=32),
    "hrnet_w48": dict(name="hrnet", width=48),
    "sbl_r50": dict(name="simple_baseline", depth=50),
    "sbl_r101": dict(name="simple_baseline", depth=101),
    "sbl_r152": dict(name="simple_baseline", depth=152),
}
QUICK_ARCHS = {
    "hrnet": dict(width=8, stage_modules=(1, 1, 1), num_blocks=1),
    "simple_baseline": dict(base_width=8, deconv_features=(16, 16, 16)),
}
# Per family, the reference yaml values: colour order, augmentation, schedule (epochs).
FAMILY = {
    "hrnet": dict(color="rgb", scale_factor=0.35, rotation_factor=45.0, half_body_prob=0.3,
                  total_epochs=210, decay_epochs=(170, 200)),
    "simple_baseline": dict(color="bgr", scale_factor=0.30, rotation_factor=40.0,
                            half_body_prob=0.0, total_epochs=140, decay_epochs=(90, 120)),
}
DATASETS = {
    "coco": dict(num_keypoints=17, root="data/coco",
                 train_ann="annotations/person_keypoints_train2017.json",
                 val_ann="annotations/person_keypoints_val2017.json",
                 train_images="train2017", val_images="val2017",
                 det_file="person_detection_results/COCO_val2017_detections_AP_H_56_person.json"),
    "crowdpose": dict(num_keypoints=14, root="data/crowdpose",
                      train_ann="json/crowdpose_train.json", val_ann="json/crowdpose_val.json",
                      train_images="images", val_images="images", det_file=""),
}
# Evaluations of the models trained on each dataset (the OCHuman rows, supplementary
# Tables 7 and 8, evaluate the COCO-trained models).
EVALS = {
    "coco": {
        "coco_val": dict(dataset="coco", root="data/coco",
                         ann="annotations/person_keypoints_val2017.json", images="val2017"),
        "ochuman_val": dict(dataset="ochuman", root="data/ochuman",
                            ann="ochuman_coco_format_val_range_0.00_1.00.json",
                            images="images"),
        "ochuman_test": dict(dataset="ochuman", root="data/ochuman",
                             ann="ochuman_coco_format_test_range_0.00_1.00.json",
                             images="images"),
    },
    "crowdpose": {
        "crowdpose_val": dict(dataset="crowdpose", root="data/crowdpose",
                              ann="json/crowdpose_val.json", images="images"),
        "crowdpose_test": dict(dataset="crowdpose", root="data/crowdpose",
                               ann="json/crowdpose_test.json", images="images"),
    },
}
FLAGS = ("quick", "baseline", "bf16", "finetune")


def parse_arg(arg: str | None) -> dict:
  """'quick,n=3' -> {'quick': True, 'baseline': False, ..., 'n': 3}."""
  out = {flag: False for flag in FLAGS}
  out["n"] = None
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key == "n" and value.isdigit():
      out["n"] = int(value)
    elif key in FLAGS and not value:
      out[key] = True
    else:
      raise ValueError(f"unknown config argument {item!r}; use a comma list of "
                       f"{', '.join(FLAGS)} and n=K")
  return out


def experiment(arch: str, dataset: str, image_hw: tuple[int, int],
               arg: str | None = None) -> ml_collections.ConfigDict:
  """The config of one experiment: ``arch`` in ARCHS, ``dataset`` in DATASETS,
  ``image_hw`` the input (h, w). See the module docstring for ``arg``."""
  opts = parse_arg(arg)
  model = dict(ARCHS[arch])
  family = FAMILY[model["name"]]
  data = DATASETS[dataset]
  c = ml_collections.ConfigDict()
  c.experiment = f"{arch}_{dataset}_{image_hw[0]}x{image_hw[1]}"
  c.seed = 0
  # N: 1 = baseline network, 2 = MIPNet (paper default), 3 / 4 = Table 1.
  c.num_instances = 1 if opts["baseline"] else (opts["n"] or 2)

  c.model = ml_collections.ConfigDict(dict(
      model, num_keypoints=data["num_keypoints"],
      mimb_slots=(False, False, True, True),   # the authors' SE_MODULES
      mimb_reduce=4, mimb_only_embed=False, lambda_code="one_hot",
      dtype="bfloat16" if opts["bf16"] else "float32"))

  c.data = ml_collections.ConfigDict(dict(
      name=dataset, root=data["root"], train_ann=data["train_ann"], val_ann=data["val_ann"],
      train_images=data["train_images"], val_images=data["val_images"],
      det_file=data["det_file"],
      image_hw=tuple(image_hw), heatmap_hw=(image_hw[0] // 4, image_hw[1] // 4),
      sigma=2.0 if image_hw[0] <= 256 else 3.0,
      color=family["color"], scale_factor=family["scale_factor"],
      rotation_factor=family["rotation_factor"], half_body_prob=family["half_body_prob"],
      flip=True, batch_size=128, num_workers=4))

  c.optim = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3, weight_decay=0.0))
  c.schedule = ml_collections.ConfigDict(dict(
      total_epochs=family["total_epochs"], decay_epochs=family["decay_epochs"],
      decay_factor=0.1, warmup_epochs=0))
  c.init_from = ""   # params-only checkpoint to start from (e.g. ImageNet or COCO weights)
  if opts["finetune"]:
    c.schedule.update(total_epochs=110, decay_epochs=(70, 100))

  c.evals = ml_collections.ConfigDict(EVALS[dataset])
  if opts["quick"]:
    _make_quick(c)
  return c


def _make_quick(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config to run in seconds on a CPU (same topology, tiny widths and input)."""
  c.experiment += "_quick"
  c.model.update(QUICK_ARCHS[c.model.name])
  c.data.update(image_hw=(128, 96), heatmap_hw=(32, 24), sigma=2.0, batch_size=4,
                num_workers=0)
  c.schedule.update(total_epochs=2, decay_epochs=(1,))
