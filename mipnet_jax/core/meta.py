"""Per-dataset keypoint metadata: the one source for flipping, OKS and half-body splits.

COCO and OCHuman (its COCO-format export) share the 17 COCO keypoints. CrowdPose has 14:
the 12 limb joints in COCO order (shoulders to ankles), then head top and neck. Any other
skeleton (OCPose's 12 joints, a user's own) is built from fields with ``build_meta``, which
checks them; ``joint_map`` pairs a model's joints with a dataset's by name (evaluation of a
COCO model on another dataset's common joints, supplementary Table 12).
"""

from __future__ import annotations

import dataclasses

import numpy as np


class MetaError(ValueError):
  """Inconsistent keypoint metadata; the message names the field and the entry."""


def _check_names(names: tuple[str, ...], where: str) -> None:
  """At least one joint, no name twice."""
  if not names:
    raise MetaError(f"{where}: no joints declared")
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise MetaError(f"{where}: joint names repeat: {', '.join(dup)}")


def check_meta(meta: DatasetMeta, where: str = "") -> None:
  """One-line MetaError unless names are unique, there is one sigma per joint, and every
  flip pair, upper-body joint and skeleton edge names joints in range."""
  where = where or f"dataset {meta.name!r}"
  _check_names(meta.keypoint_names, where)
  k = len(meta.keypoint_names)
  if len(meta.sigmas) != k:
    raise MetaError(f"{where}: sigmas has {len(meta.sigmas)} values for {k} joints")
  if any(not s > 0 for s in meta.sigmas):
    raise MetaError(f"{where}: sigmas must be positive, got {tuple(meta.sigmas)}")
  for field in ("flip_pairs", "skeleton"):
    for i, pair in enumerate(getattr(meta, field)):
      if len(pair) != 2 or pair[0] == pair[1]:
        raise MetaError(f"{where}: {field}[{i}] = {tuple(pair)} is not a pair of two joints")
      for j in pair:
        if not 0 <= j < k:
          raise MetaError(f"{where}: {field}[{i}] = {tuple(pair)}: joint {j} out of range "
                          f"for {k} joints")
  flipped = [j for pair in meta.flip_pairs for j in pair]
  if len(set(flipped)) != len(flipped):
    raise MetaError(f"{where}: flip_pairs name a joint twice: {meta.flip_pairs}")
  for j in meta.upper_body_ids:
    if not 0 <= j < k:
      raise MetaError(f"{where}: upper_body joint {j} out of range for {k} joints")


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


# OKS sigmas by joint name (COCO's, and CrowdPose's head / neck): the default of a declared
# joint with this name.
KNOWN_SIGMAS = dict(zip(COCO.keypoint_names + ("head", "neck"),
                        COCO.sigmas + CROWDPOSE.sigmas[12:]))
# Named joint sets (config: ``joints="limbs"``).
JOINT_SETS = {"limbs": _LIMBS}


def _joint_index(names: tuple[str, ...], value, where: str) -> int:
  """A joint given by name or 0-based index -> its index."""
  if isinstance(value, str):
    if value not in names:
      raise MetaError(f"{where}: unknown joint name {value!r} (joints: {', '.join(names)})")
    return names.index(value)
  if isinstance(value, bool) or not isinstance(value, int):
    raise MetaError(f"{where}: a joint is a name or an index, got {value!r}")
  if not 0 <= value < len(names):
    raise MetaError(f"{where}: joint {value} out of range for {len(names)} joints")
  return value


def build_meta(name: str, keypoint_names, flip_pairs=(), sigmas=(), upper_body=(),
               skeleton=(), where: str = "") -> DatasetMeta:
  """A checked DatasetMeta from declared fields (a config's ``keypoints`` block).

  Joints in ``flip_pairs``, ``upper_body`` and ``skeleton`` are names or 0-based indices.
  Empty ``sigmas``: each joint's ``KNOWN_SIGMAS`` entry (an unknown name is then an error);
  empty ``upper_body``: no half-body split. ``where`` prefixes the one-line MetaError.
  """
  where = where or f"dataset {name!r}"
  names = tuple(str(n) for n in keypoint_names)
  _check_names(names, where)          # before joints are looked up by name
  if not sigmas:
    unknown = [n for n in names if n not in KNOWN_SIGMAS]
    if unknown:
      raise MetaError(f"{where}: sigmas not given and no known OKS sigma for "
                      f"{', '.join(unknown)}; declare one sigma per joint")
    sigmas = tuple(KNOWN_SIGMAS[n] for n in names)

  def pairs(field, value):
    return tuple(tuple(_joint_index(names, j, f"{where}: {field}[{i}]") for j in pair)
                 for i, pair in enumerate(value))

  meta = DatasetMeta(
      name=name, keypoint_names=names, sigmas=tuple(float(s) for s in sigmas),
      flip_pairs=pairs("flip_pairs", flip_pairs), skeleton=pairs("skeleton", skeleton),
      upper_body_ids=tuple(_joint_index(names, j, f"{where}: upper_body") for j in upper_body))
  check_meta(meta, where)     # names, sigma count, pairs: one-line errors naming ``where``
  return meta


@dataclasses.dataclass(frozen=True)
class JointMap:
  """The joints a model of one skeleton is evaluated on in a dataset of another.

  Attributes:
    names: the E evaluated joints, in the dataset's order.
    model_ids: [E] their indices in the model's output.
    data_ids: [E] their indices in the dataset's annotations.
    sigmas: [E] their OKS sigmas (the dataset's).
  """

  names: tuple[str, ...]
  model_ids: tuple[int, ...]
  data_ids: tuple[int, ...]
  sigmas: tuple[float, ...]

  def selects_from(self, data: DatasetMeta) -> bool:
    """True when it leaves out (or reorders) some of ``data``'s joints, so that the ground
    truth must be cut to the evaluated joints."""
    return self.data_ids != tuple(range(data.num_keypoints))


def expand_joints(spec: str) -> tuple[str, ...]:
  """A comma list of joint names and ``JOINT_SETS`` names -> the joint names, in order
  ("limbs,nose" -> the 12 limb joints, then nose; "" -> ())."""
  return tuple(name for item in spec.split(",") if item.strip()
               for name in JOINT_SETS.get(item.strip(), (item.strip(),)))


def joint_map(model: DatasetMeta, data: DatasetMeta, joints: str = "") -> JointMap:
  """Pairs ``model``'s joints with ``data``'s by name.

  ``joints``: "" = every joint of ``data`` (each must be a model joint), or a comma list of
  joint names and ``JOINT_SETS`` names ("limbs", "limbs,nose"). Joints keep ``data``'s order.
  """
  wanted = expand_joints(joints)
  if not wanted:
    wanted = data.keypoint_names
  for name in wanted:
    if name not in data.keypoint_names:
      raise MetaError(f"joints: {name!r} is not a joint of {data.name} "
                      f"({', '.join(data.keypoint_names)})")
  missing = [n for n in wanted if n not in model.keypoint_names]
  if missing:
    raise MetaError(f"joints: the {model.name} model has no {', '.join(missing)}; evaluate on "
                    f"the common joints (e.g. joints='limbs' or a comma list of names)")
  names = tuple(n for n in data.keypoint_names if n in wanted)
  data_ids = tuple(data.keypoint_names.index(n) for n in names)
  return JointMap(names, tuple(model.keypoint_names.index(n) for n in names), data_ids,
                  tuple(data.sigmas[i] for i in data_ids))
