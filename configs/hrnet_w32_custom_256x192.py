"""HRNet / MIPNet H-32 256x192 on a user's own COCO-format keypoint dataset.

The values below are the worked example of datasets/custom/README.md (5 joints written by
`python scripts/make_custom_example.py --root data/custom`). For your own data, copy this file
and change NAME, KEYPOINTS and FILES: nothing else in the code needs to change.
CPU demo: `--config=configs/hrnet_w32_custom_256x192.py:quick`; baseline: append `baseline`."""

from mipnet_jax.experiments import custom_experiment, keypoints_block

NAME = "custom"
# Joints in annotation order; flip pairs, upper body (half-body augmentation) and skeleton
# (drawing) by name; one OKS sigma per joint (may be left empty when every joint has a COCO
# or CrowdPose name).
KEYPOINTS = keypoints_block(
    names=("head", "neck", "pelvis", "left_hand", "right_hand"),
    flip_pairs=[("left_hand", "right_hand")],
    sigmas=(0.079, 0.079, 0.107, 0.062, 0.062),
    upper_body=("head", "neck", "left_hand", "right_hand"),
    skeleton=[("head", "neck"), ("neck", "pelvis"), ("neck", "left_hand"),
              ("neck", "right_hand")])
FILES = dict(root="data/custom", train_ann="annotations/person_keypoints_train.json",
             val_ann="annotations/person_keypoints_val.json", train_images="images/train",
             val_images="images/val")


def get_config(arg=None):
  return custom_experiment("hrnet_w32", NAME, KEYPOINTS, (256, 192), arg, **FILES)
