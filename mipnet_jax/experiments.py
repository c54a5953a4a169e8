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

from mipnet_jax.core.meta import JOINT_SETS

# Architecture presets: config.model fields (constructor kwargs of the flax module).
# ViTPose's fields shared by every size (models/vit.py); slot_blocks () = the depth's quarters.
VIT_FIELDS = dict(mlp_ratio=4.0, patch_size=16, patch_padding=2, deconv_features=(256, 256),
                  slot_blocks=())
ARCHS = {
    "hrnet_w32": dict(name="hrnet", width=32),
    "hrnet_w48": dict(name="hrnet", width=48),
    "sbl_r50": dict(name="simple_baseline", depth=50),
    "sbl_r101": dict(name="simple_baseline", depth=101),
    "sbl_r152": dict(name="simple_baseline", depth=152),
    # ViTPose-S/B/L/H (the official COCO configs' backbone and head; drop path as they set it)
    "vitpose_s": dict(name="vitpose", embed_dim=384, depth=12, num_heads=12, drop_path_rate=0.1,
                      **VIT_FIELDS),
    "vitpose_b": dict(name="vitpose", embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.3,
                      **VIT_FIELDS),
    "vitpose_l": dict(name="vitpose", embed_dim=1024, depth=24, num_heads=16,
                      drop_path_rate=0.5, **VIT_FIELDS),
    "vitpose_h": dict(name="vitpose", embed_dim=1280, depth=32, num_heads=16,
                      drop_path_rate=0.55, **VIT_FIELDS),
}
QUICK_ARCHS = {
    "hrnet": dict(width=8, stage_modules=(1, 1, 1), num_blocks=1, stem_width=16),
    "simple_baseline": dict(base_width=8, deconv_features=(16, 16, 16)),
    "vitpose": dict(embed_dim=64, depth=4, num_heads=4, deconv_features=(32, 32),
                    drop_path_rate=0.1),
}
# Per family, the reference yaml values: colour order, augmentation, schedule (epochs).
FAMILY = {
    "hrnet": dict(color="rgb", scale_factor=0.35, rotation_factor=45.0, half_body_prob=0.3,
                  total_epochs=210, decay_epochs=(170, 200)),
    "simple_baseline": dict(color="bgr", scale_factor=0.30, rotation_factor=40.0,
                            half_body_prob=0.0, total_epochs=140, decay_epochs=(90, 120)),
    # mmpose's TopDownGetRandomScaleRotation(rot_factor=40, scale_factor=0.5), half body 0.3
    "vitpose": dict(color="rgb", scale_factor=0.5, rotation_factor=40.0, half_body_prob=0.3,
                    total_epochs=210, decay_epochs=(170, 200),
                    # The official test_cfg's use_udp=True (and UDP targets in training).
                    udp=True,
                    # MIMBs after 1/2 and 3/4 of the blocks and on the output: with only the
                    # last quarter after lambda, MIPNet-ViT's lambda=1 added 0.4 AP on shared
                    # boxes and nothing on pairs (README, ViTPose and MIPNet-ViT).
                    mimb_slots=(False, True, True, True),
                    # The official recipe (train/optim.py): AdamW with the layer-decay
                    # constructor's decay mask, clip_grad_norm 1, step policy with mmcv's
                    # linear warm-up over 500 iterations from 0.001 x lr. lr 5e-4 is for
                    # their batch of 64 per GPU x 8 GPUs = 512 (data.batch_size is global).
                    optim=dict(name="adamw", learning_rate=5e-4, betas=(0.9, 0.999),
                               weight_decay=0.1, grad_clip_norm=1.0),
                    schedule=dict(warmup_steps=500, warmup_ratio=0.001), batch_size=512),
}
# Per architecture, config.optim fields beyond the family's: the official configs'
# paramwise_cfg.layer_decay_rate (their num_layers is the depth; ViTPose-L's once read 16).
ARCH_OPTIM = {"vitpose_s": dict(layer_decay=0.9), "vitpose_b": dict(layer_decay=0.75),
              "vitpose_l": dict(layer_decay=0.8), "vitpose_h": dict(layer_decay=0.85)}
DATASETS = {
    "coco": dict(num_keypoints=17, root="data/coco",
                 train_ann="annotations/person_keypoints_train2017.json",
                 val_ann="annotations/person_keypoints_val2017.json",
                 train_images="train2017", val_images="val2017"),
    "crowdpose": dict(num_keypoints=14, root="data/crowdpose",
                      train_ann="json/crowdpose_train.json", val_ann="json/crowdpose_val.json",
                      train_images="images", val_images="images"),
    # Generated by data/synthetic.py on first use (no download): the embedded default.
    "synthetic": dict(num_keypoints=17, root="data/synthetic",
                      train_ann="annotations/person_keypoints_train.json",
                      val_ann="annotations/person_keypoints_val.json",
                      train_images="images/train", val_images="images/val",
                      synthetic=dict(seed=0, num_train=1500, num_val=200, image_hw=(256, 256))),
}


def eval_split(dataset: str, ann: str, images: str, root: str = "", det_file: str = "",
               **options) -> dict:
  """One entry of config.eval_data: the split's files (an empty root means config.data.root;
  det_file, relative to the root, holds its detector boxes, if any) and its per-split options
  (eval/protocol.py): boxes, joints, metric, area_rule ("" = the defaults) and, for a dataset
  that is not built in, keypoints (its declared joints)."""
  split = dict(dataset=dataset, root=root, ann=ann, images=images, det_file=det_file, boxes="",
               joints="", metric="", area_rule="")
  unknown = set(options) - set(split) - {"keypoints"}
  if unknown:
    raise ValueError(f"eval_split: unknown options {sorted(unknown)}")
  split.update(options)
  return split


def keypoints_block(names=(), flip_pairs=(), sigmas=(), upper_body=(), skeleton=()) -> dict:
  """A ``keypoints`` config block (data/inputs.dataset_meta): joint names in annotation
  order; flip pairs, upper-body joints and skeleton edges by name or index; sigmas (empty:
  the known ones of COCO / CrowdPose joint names)."""
  return dict(names=tuple(names), flip_pairs=tuple(tuple(p) for p in flip_pairs),
              sigmas=tuple(sigmas), upper_body=tuple(upper_body),
              skeleton=tuple(tuple(e) for e in skeleton))


_LIMBS = JOINT_SETS["limbs"]
# OCPose as established here (datasets/ocpose/README.md): 12 labelled joints, the limb joints,
# with COCO's sigmas; the order below (COCO's) is an assumption a user must check against the
# downloaded file.
OCPOSE_KEYPOINTS = keypoints_block(
    names=_LIMBS,
    flip_pairs=[(f"left_{j}", f"right_{j}") for j in ("shoulder", "elbow", "wrist", "hip",
                                                       "knee", "ankle")],
    upper_body=_LIMBS[:6],
    skeleton=[("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
              ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip")]
    + [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
       for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"),
                    ("knee", "ankle"))])
# OCPose / OPEC-Net's evaluation: CrowdPose-style OKS area (0.53 x box area), COCO summary
# (the supplementary's Table 12 prints APM / APL), maxDets 20.
OCPOSE_PROTOCOL = dict(keypoints=OCPOSE_KEYPOINTS, metric="coco", area_rule="box_0.53")

# Evaluation splits of the models trained on each dataset (the OCHuman rows, supplementary
# Tables 7 and 8, and the OCPose rows, Table 12, evaluate the COCO-trained models).
EVALS = {
    "coco": {
        "coco_val": eval_split(
            "coco", "annotations/person_keypoints_val2017.json", "val2017",
            det_file="person_detection_results/COCO_val2017_detections_AP_H_56_person.json"),
        # Images only: the results file goes to the COCO server (metrics here read -1).
        "coco_test_dev": eval_split(
            "coco", "annotations/image_info_test-dev2017.json", "test2017",
            det_file="person_detection_results/COCO_test-dev2017_detections_AP_H_609_person.json"),
        "ochuman_val": eval_split(
            "ochuman", "ochuman_coco_format_val_range_0.00_1.00.json", "images",
            root="data/ochuman", det_file="OCHuman_val2017_detections_AP_H_27_person.json"),
        "ochuman_test": eval_split(
            "ochuman", "ochuman_coco_format_test_range_0.00_1.00.json", "images",
            root="data/ochuman"),
        # Table 12: both people of an image share one relaxed box (eval.boxes=gt_tight: the
        # tight boxes of the joints); the model's 17 COCO joints scored on the 12 limbs.
        "ocpose_test": eval_split("ocpose", "annotations/ocpose_test.json", "images",
                                  root="data/ocpose", **OCPOSE_PROTOCOL),
        # A COCO model on CrowdPose's 12 joints shared with COCO (its protocol otherwise).
        "crowdpose_test": eval_split("crowdpose", "json/crowdpose_test.json", "images",
                                     root="data/crowdpose", joints="limbs"),
    },
    "crowdpose": {
        "crowdpose_val": eval_split("crowdpose", "json/crowdpose_val.json", "images"),
        "crowdpose_test": eval_split("crowdpose", "json/crowdpose_test.json", "images"),
    },
    "synthetic": {
        "synthetic_val": eval_split("synthetic", "annotations/person_keypoints_val.json",
                                    "images/val",
                                    det_file="annotations/person_detections_val.json"),
        # Only the images of occluding pairs: boxes that hold two people.
        "synthetic_val_pairs": eval_split(
            "synthetic", "annotations/person_keypoints_val_pairs.json", "images/val",
            det_file="annotations/person_detections_val_pairs.json"),
        # The pairs annotated OCPose-style (data/synthetic.py): both people share one relaxed
        # box, 12 limb joints; scored as OCPose, with the shared boxes and with tight ones.
        "synthetic_val_shared": eval_split(
            "synthetic_shared", "annotations/person_keypoints_val_shared.json", "images/val",
            **OCPOSE_PROTOCOL),
        "synthetic_val_shared_tight": eval_split(
            "synthetic_shared", "annotations/person_keypoints_val_shared.json", "images/val",
            boxes="gt_tight", **OCPOSE_PROTOCOL),
    },
}
SWEEP_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FLAGS = ("quick", "baseline", "bf16", "finetune")
DEMO_EPOCHS = 10     # synthetic:quick, ~1,200 steps of 32 boxes


# Fields renamed since earlier versions: old dotted name -> new one (check_renamed, main's
# override errors).
RENAMED = {"evals": "eval_data"}


def check_renamed(config: ml_collections.ConfigDict) -> None:
  """A config (e.g. a user's own file) that still sets a renamed field: ValueError naming the
  new one."""
  for old, new in RENAMED.items():
    if old in config:
      raise ValueError(f"config.{old} was renamed to config.{new}")


def renamed_field(name: str) -> str | None:
  """The new dotted name of an override path that starts with a renamed field, else None
  ('evals.coco_val.det_file' -> 'eval_data.coco_val.det_file')."""
  for old, new in RENAMED.items():
    if name == old or name.startswith(old + "."):
      return new + name[len(old):]
  return None


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
  return _experiment(arch, dataset, DATASETS[dataset], EVALS[dataset], image_hw, arg)


def custom_experiment(arch: str, name: str, keypoints: dict, image_hw: tuple[int, int],
                      arg: str | None = None, *, root: str, train_ann: str, val_ann: str,
                      train_images: str, val_images: str) -> ml_collections.ConfigDict:
  """The config of an experiment on a user's own COCO-format keypoint dataset ``name``:
  its joints declared by ``keypoints`` (``keypoints_block``), its files under ``root``. The
  model predicts those joints; the evaluation split ``<name>_val`` is the val file scored
  with the COCO protocol and the declared sigmas (datasets/custom/README.md)."""
  data = dict(num_keypoints=len(keypoints["names"]), root=root, train_ann=train_ann,
              val_ann=val_ann, train_images=train_images, val_images=val_images)
  evals = {f"{name}_val": eval_split(name, val_ann, val_images)}
  return _experiment(arch, name, data, evals, image_hw, arg, keypoints)


def _experiment(arch: str, dataset: str, data: dict, evals: dict, image_hw: tuple[int, int],
                arg: str | None, keypoints: dict | None = None) -> ml_collections.ConfigDict:
  opts = parse_arg(arg)
  model = dict(ARCHS[arch])
  family = FAMILY[model["name"]]
  c = ml_collections.ConfigDict()
  c.experiment = f"{arch}_{dataset}_{image_hw[0]}x{image_hw[1]}"
  c.seed = 0
  # N: 1 = baseline network, 2 = MIPNet (paper default), 3 / 4 = Table 1.
  c.num_instances = 1 if opts["baseline"] else (opts["n"] or 2)

  c.model = ml_collections.ConfigDict(dict(
      model, num_keypoints=data["num_keypoints"],
      # the authors' SE_MODULES; MIPNet-ViT lets lambda in after half of the blocks
      mimb_slots=family.get("mimb_slots", (False, False, True, True)),
      mimb_reduce=4, mimb_only_embed=False, lambda_code="one_hot",
      dtype="bfloat16" if opts["bf16"] else "float32",
      # auto: XLA:CPU's convolution forms on CPU, XLA's own on GPU / TPU (models/conv_kernels.py)
      conv_impl="auto"))

  c.data = _data_config(dataset, data, family, image_hw, keypoints)

  # The reference's Adam at 1e-3 unless the family / architecture set a recipe (optim.py):
  # name adam|adamw, layer_decay 1.0 = off, grad_clip_norm 0 = off.
  c.optim = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3, weight_decay=0.0, betas=(0.9, 0.999), layer_decay=1.0,
      grad_clip_norm=0.0))
  c.optim.update(**family.get("optim", {}), **ARCH_OPTIM.get(arch, {}))
  # warmup_epochs: linear from 0; warmup_steps: mmcv's, from warmup_ratio x lr (0 = off).
  c.schedule = ml_collections.ConfigDict(dict(
      total_epochs=family["total_epochs"], decay_epochs=family["decay_epochs"],
      decay_factor=0.1, warmup_epochs=0, warmup_steps=0, warmup_ratio=0.001))
  c.schedule.update(family.get("schedule", {}))
  c.init_from = ""   # params-only checkpoint to start from (e.g. ImageNet or COCO weights)
  # Device mesh (one axis may be -1: the remaining devices); "data" shards the batch.
  c.mesh_shape = ml_collections.ConfigDict({"data": -1})
  c.train = ml_collections.ConfigDict(dict(
      total_steps=0,              # 0: schedule.total_epochs of the training split
      log_every_steps=100, checkpoint_every_steps=1000, keep_checkpoints=3,
      async_checkpoints=True, eval_every_epochs=10, progress_every_s=30.0))
  if opts["finetune"]:
    c.schedule.update(total_epochs=110, decay_epochs=(70, 100))

  c.eval_data, c.eval = _eval_config(dataset, evals)
  if opts["quick"]:
    _make_quick(c)
  return c


def _data_config(dataset: str, data: dict, family: dict, image_hw: tuple[int, int],
                 keypoints: dict | None) -> ml_collections.ConfigDict:
  """config.data: the dataset's files, the input / heatmap sizes and the family's
  augmentation, colour order, batch and geometry."""
  d = ml_collections.ConfigDict(dict(
      name=dataset, root=data["root"], train_ann=data["train_ann"], val_ann=data["val_ann"],
      train_images=data["train_images"], val_images=data["val_images"],
      image_hw=tuple(image_hw), heatmap_hw=(image_hw[0] // 4, image_hw[1] // 4),
      sigma=2.0 if image_hw[0] <= 256 else 3.0,
      color=family["color"], scale_factor=family["scale_factor"],
      rotation_factor=family["rotation_factor"], half_body_prob=family["half_body_prob"],
      flip=True, batch_size=family.get("batch_size", 128), num_workers=4,
      prepared_dir="",        # TFDS data_dir of datasets prepared by data/tfds_pose.py
      decode_reduce=False,    # decode JPEGs at 1/2..1/8 size when the crop allows it
      # UDP geometry (ViTPose): crops, targets, flip test and decoding (UDP-DARK); core/codec.py
      udp=family.get("udp", False),
      # The dataset's joints when it is not built in (empty names: the built-in dataset's).
      keypoints=keypoints or keypoints_block()))
  if "synthetic" in data:
    d.synthetic = ml_collections.ConfigDict(data["synthetic"])
  return d


def _eval_config(dataset: str, evals: dict
                 ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """(config.eval_data, config.eval) of a dataset: where each evaluation split's files are
  (config.eval.splits picks among them), and the evaluation protocol (stamped into every
  metrics file; N=0: the model's N)."""
  eval_data = ml_collections.ConfigDict(evals)
  ev = ml_collections.ConfigDict(dict(
      # Comma-separated names in config.eval_data: the dataset's own val split (synthetic: also
      # its crowded subsets).
      splits=",".join(evals) if dataset == "synthetic" else next(iter(evals)),
      # "gt" (annotated boxes), "gt_tight" (boxes of the labelled joints) or "detections"
      # (the split's det_file); config.eval_data.<split>.boxes overrides it per split.
      boxes="gt",
      min_box_score=0.0,          # detections below it are dropped
      num_instances=0, flip=True,
      gamma=0.9, gamma_mode="power",   # paper: gamma^lambda; authors' code: 0.5, "constant"
      in_vis_thre=0.2,            # joints above it enter the rescoring mean
      nms="none" if dataset == "crowdpose" else "oks",   # CrowdPose's reference has no NMS
      nms_threshold=0.9,
      keep_lambda=-1,             # -1: merge every lambda; k: single-instance mode lambda=k
      decode="quarter",           # or "dark"; config.data.udp decodes with "udp_dark"
      batch_size=64,
      checkpoint="",              # a run's workdir or a variables checkpoint; "" = the
                                  # newest in --workdir, else freshly initialised
      baseline_checkpoint="",     # sweep: the N=1 model shown beside MIPNet
      sweep_thresholds=SWEEP_THRESHOLDS))
  return eval_data, ev


def _make_quick(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config to run in seconds on a CPU (same topology, tiny widths and input)."""
  c.experiment += "_quick"
  c.model.update(QUICK_ARCHS[c.model.name])
  # At 8-channel widths, F_ex / F_em at r=4 would have 2 hidden units on the highest-resolution
  # branch; r=1 (Table 11: on par with r=4 at full width) gives the tiny MIMBs room to
  # separate the instances. On the synthetic demo it is what lets MIPNet beat the baseline.
  c.model.mimb_reduce = 1
  c.data.update(image_hw=(128, 96), heatmap_hw=(32, 24), sigma=2.0, batch_size=4,
                num_workers=0)
  c.eval.batch_size = 8
  # ViTPose's layer-wise lr decay and 500-iteration warm-up are for fine-tuning an MAE-trained
  # ViT over 210 epochs; a quick run trains from scratch in ~1,000 steps (on the synthetic
  # demo they cost ViTPose 10 AP: 0.30 -> 0.40 without both).
  c.optim.layer_decay = 1.0
  c.schedule.warmup_steps = min(c.schedule.warmup_steps, 50)
  c.train.update(log_every_steps=10, checkpoint_every_steps=50, eval_every_epochs=1)
  c.schedule.update(total_epochs=2, decay_epochs=(1,))
  if c.data.name == "synthetic":
    # The README's demo: MIPNet on the synthetic crowd set in minutes on a 2-core CPU.
    c.data.batch_size = 32
    c.eval.batch_size = 64
    c.train.update(log_every_steps=50, checkpoint_every_steps=200,
                   eval_every_epochs=DEMO_EPOCHS, progress_every_s=15.0)
    c.schedule.update(total_epochs=DEMO_EPOCHS, decay_epochs=(DEMO_EPOCHS * 0.8,))
