"""Per-dataset keypoint metadata: the one source for flipping, OKS and half-body splits.

COCO and OCHuman (its COCO-format export) share the 17 COCO keypoints. CrowdPose has 14:
the 12 limb joints in COCO order (shoulders to ankles), then head top and neck.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
  """Keypoint metadata of one dataset.

  Attributes:
    name: dataset name.
    keypoint_names: K names, in annotation order.
    flip_pairs: (left, right) index pairs swapped by a horizontal flip.
    sigmas: K per-keypoint OKS sigmas (the evaluation's, already divided by 10).
    upper_body_ids: keypoints of the upper body (half-body augmentation).
    skeleton: 0-based keypoint pairs joined when drawing (not used by any metric).
  """

  name: str
  keypoint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  sigmas: tuple[float, ...]
  upper_body_ids: tuple[int, ...]
  skeleton: tuple[tuple[int, int], ...] = ()

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  @property
  def lower_body_ids(self) -> tuple[int, ...]:
    return tuple(i for i in range(self.num_keypoints) if i not in self.upper_body_ids)

  @property
  def flip_permutation(self) -> np.ndarray:
    """[K] int: keypoint k of a flipped image is keypoint ``perm[k]`` of the original."""
    perm = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      perm[a], perm[b] = b, a
    return perm


_LIMBS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
          "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
          "right_ankle")
_LIMB_SIGMAS = (.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)

COCO = DatasetMeta(
    name="coco",
    keypoint_names=("nose", "left_eye", "right_eye", "left_ear", "right_ear") + _LIMBS,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=tuple(s / 10 for s in (.26, .25, .25, .35, .35) + _LIMB_SIGMAS),
    upper_body_ids=tuple(range(11)),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
              (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
              (3, 5), (4, 6)),
)
OCHUMAN = dataclasses.replace(COCO, name="ochuman")
SYNTHETIC = dataclasses.replace(COCO, name="synthetic")   # data/synthetic.py draws COCO joints
CROWDPOSE = DatasetMeta(
    name="crowdpose",
    keypoint_names=_LIMBS + ("head", "neck"),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    sigmas=tuple(s / 10 for s in _LIMB_SIGMAS + (.79, .79)),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
    # Drawn from the joint names: CrowdPose's own JSON skeleton is known to be wrong.
    skeleton=((12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7),
              (6, 7), (6, 8), (8, 10), (7, 9), (9, 11)),
)
DATASETS = {m.name: m for m in (COCO, OCHUMAN, CROWDPOSE, SYNTHETIC)}


def get_meta(name: str) -> DatasetMeta:
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
  return DATASETS[name]
