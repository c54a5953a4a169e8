"""A synthetic crowd-pose dataset in COCO keypoint format, generated from a seed.

The embedded default dataset: articulated stick-and-blob people with the 17 COCO joints on
cluttered backgrounds. Most images hold a "pair": a back person B partly covered by a front
person A, with box IoU 0.55-0.95 (A shifted by at most 35% of B's width), so the two boxes
nearly coincide, as in OCHuman. A single-output net must pick one of the two
people in such a crop, and tends to pick the same one for both boxes; MIPNet's instance 1
predicts the other one.

Layout under ``root``: ``annotations/person_keypoints_{train,val}.json`` (and ``*_pairs.json``,
the pair images only), ``annotations/person_detections_{train,val}[_pairs].json`` (boxes of
a simulated detector, data/simulated_detector.py), ``images/{train,val}/000000000001.jpg`` and
``MANIFEST.json`` (the parameters and counts).
Points are (x, y), sizes (h, w). Left limbs (the person's left, the image's right: everyone
faces the camera) are a lighter shade of the person's colour, right limbs a darker one.
A joint outside the image has v=0 (stored as 0, 0, 0), one under a person drawn in front
v=1, otherwise v=2. Each image has its own generator ``default_rng([seed, split, index])``,
so the output is the same byte for byte whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import colorsys
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import re

import cv2
import numpy as np

from mipnet_jax.data import simulated_detector
from mipnet_jax.data.coco_format import count_multi_instance, load_person_records
from mipnet_jax.data.meta import COCO

VERSION = 3
SPLITS = ("train", "val")
SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
            (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6),
            (5, 7))   # COCO's, 1-based
SCENES = ("single", "pair", "crowd")
SCENE_PROBS = (0.15, 0.6, 0.25)
MIN_VISIBLE = 4        # a placement may not leave a person behind with fewer visible joints
PAIR_IOU = (0.55, 0.95)
PAIR_SHIFT = (0.0, 0.35)   # |dx| of the front person, in units of the back one's width
_SHIFT = 4             # cv2 fixed-point bits: sub-pixel drawing
_FILE_RE = re.compile(r"^\d{12}\.jpg$")


@dataclasses.dataclass
class Figure:
  """One drawn person.

  Attributes:
    joints: [17, 2] (x, y) image pixels, COCO order. height: nominal height in pixels.
    head: ((x, y) centre, (a, b) half axes, angle in degrees) of the head ellipse.
    colors: BGR colours: torso, left, right, skin, outline.
    mask: [H, W] uint8, 255 where the body (outline included) is drawn.
  """

  joints: np.ndarray
  height: float
  head: tuple
  colors: dict
  mask: np.ndarray | None = None


def _dir(angle: float, down: np.ndarray, out: np.ndarray) -> np.ndarray:
  """Unit vector ``angle`` rad from ``down`` toward ``out`` (both [2] unit vectors)."""
  return np.sin(angle) * out + np.cos(angle) * down


def _rotation(angle: float) -> np.ndarray:
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s], [s, c]])


def sample_pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, tuple]:
  """A random facing-camera pose of a ``height``-pixel person around its mid-hip (0, 0).

  Returns joints [17, 2] (x, y) and the head ellipse (centre [2], half axes, angle deg).
  """
  h = height
  lean, turn, tilt = rng.uniform(-.15, .15), rng.uniform(.55, 1.), rng.uniform(-.2, .2)
  up = np.array([-np.sin(lean), -np.cos(lean)])
  perp = np.array([np.cos(lean), -np.sin(lean)])     # toward the person's left (image +x)
  neck = .30 * h * up
  hips = [.085 * h * turn * perp, -.085 * h * turn * perp]
  shoulders = [neck + .12 * h * turn * perp, neck - .12 * h * turn * perp]
  head_tilt = rng.uniform(-.3, .3)
  h_up, h_perp = _rotation(head_tilt) @ up, _rotation(head_tilt) @ perp
  head_c = neck + .13 * h * h_up
  yaw = rng.uniform(-1., 1.) * .02 * h
  face = [head_c - .01 * h * h_up + yaw * h_perp]                           # nose
  face += [head_c + .02 * h * h_up + (s * .026 * h + yaw) * h_perp for s in (1, -1)]
  face += [head_c + .01 * h * h_up + (s * .05 * h + .4 * yaw) * h_perp for s in (1, -1)]
  arms, legs = [], []
  raised = rng.integers(-1, 2) if rng.random() < .3 else 0   # a leg lifted: +1 left, -1 right
  for side, sho, hip in ((1, shoulders[0], hips[0]), (-1, shoulders[1], hips[1])):
    a1 = rng.uniform(-.3, 2.7)
    a2 = a1 + rng.uniform(-1.8, 1.8)
    elbow = sho + .16 * h * _dir(a1, -up, side * perp)
    arms.append((elbow, elbow + .14 * h * _dir(a2, -up, side * perp)))
    if raised == side:
      l1 = rng.uniform(.6, 1.3)
      l2 = l1 - rng.uniform(.5, 1.5)
    else:
      l1 = rng.uniform(-.2, .6)
      l2 = l1 + rng.uniform(-.7, .5)
    down, out = np.array([0., 1.]), np.array([side, 0.])
    knee = hip + .245 * h * _dir(l1, down, out)
    legs.append((knee, knee + .235 * h * _dir(l2, down, out)))
  joints = np.stack(face + shoulders + [arms[0][0], arms[1][0], arms[0][1], arms[1][1]]
                    + hips + [legs[0][0], legs[1][0], legs[0][1], legs[1][1]])
  rot = _rotation(tilt)
  head = (rot @ head_c, (.06 * h, .08 * h), float(np.degrees(tilt + lean + head_tilt)))
  return joints @ rot.T, head


def sample_colors(rng: np.random.Generator) -> dict:
  """BGR colours of one person: a random base (torso), lighter left, darker right limbs."""
  r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(.5, 1.), rng.uniform(.5, .8))
  base = np.array([b, g, r]) * 255
  skin = np.array([60, 90, 140]) + rng.random() * np.array([120, 110, 95])
  as_tuple = lambda c: tuple(float(v) for v in np.clip(c, 0, 255).round())
  return dict(torso=as_tuple(base), left=as_tuple(base + .6 * (255 - base)),
              right=as_tuple(.4 * base), skin=as_tuple(skin), outline=as_tuple(.2 * base))


def make_figure(rng: np.random.Generator, height: float) -> Figure:
  """A random person at the origin (mid-hip at (0, 0)); see ``place``."""
  joints, head = sample_pose(rng, height)
  return Figure(joints, height, head, sample_colors(rng))


def extent(fig: Figure) -> np.ndarray:
  """[4] (x1, y1, x2, y2) of the joints and head, before thickness."""
  c, (a, b), _ = fig.head
  pts = np.concatenate([fig.joints, [c - max(a, b), c + max(a, b)]])
  return np.concatenate([pts.min(0), pts.max(0)])


def place(fig: Figure, center: np.ndarray, image_hw: tuple[int, int]) -> Figure:
  """``fig`` moved so that its ``extent`` is centred on ``center`` (x, y), with its mask."""
  e = extent(fig)
  offset = np.asarray(center) - (e[:2] + e[2:]) / 2
  c, axes, angle = fig.head
  moved = Figure(np.round(fig.joints + offset, 2), fig.height, (c + offset, axes, angle),
                 fig.colors)
  moved.mask = np.zeros(image_hw, np.uint8)
  draw_figure(moved.mask, moved, as_mask=True)
  return moved


def _fix(p) -> tuple[int, ...]:
  """Pixel coordinates -> cv2 fixed-point integers (``_SHIFT`` fractional bits)."""
  return tuple(int(round(v * (1 << _SHIFT))) for v in p)


def draw_figure(img: np.ndarray, fig: Figure, as_mask: bool = False) -> None:
  """Draws ``fig`` onto ``img`` [H, W, 3] (BGR) in place; ``as_mask``: onto a [H, W] mask,
  255 wherever a part or its outline is drawn. Back to front: right leg, left leg, torso,
  head, right arm, left arm; every part outlined in a dark shade of the person's colour."""
  j, h, col = fig.joints, fig.height, fig.colors
  lt = cv2.LINE_8 if as_mask else cv2.LINE_AA
  color = (lambda name: 255) if as_mask else (lambda name: col[name])
  arm_t, leg_t = max(3, round(.05 * h)), max(3, round(.065 * h))

  def limb(a, b, t, name):
    cv2.line(img, _fix(j[a]), _fix(j[b]), color("outline"), t + 2, lt, _SHIFT)
    cv2.line(img, _fix(j[a]), _fix(j[b]), color(name), t, lt, _SHIFT)

  for name, (hip, knee, ankle) in (("right", (12, 14, 16)), ("left", (11, 13, 15))):
    limb(hip, knee, leg_t, name)
    limb(knee, ankle, leg_t, name)
  torso = np.array([_fix(j[i]) for i in (5, 6, 12, 11)], np.int32)
  cv2.polylines(img, [torso], True, color("outline"), arm_t + 2, lt, _SHIFT)
  cv2.fillConvexPoly(img, torso, color("torso"), lt, _SHIFT)
  cv2.polylines(img, [torso], True, color("torso"), arm_t, lt, _SHIFT)
  neck = (j[5] + j[6]) / 2
  cv2.line(img, _fix(neck), _fix(fig.head[0]), color("skin"), arm_t, lt, _SHIFT)
  c, (a, b), angle = fig.head
  cv2.ellipse(img, _fix(c), _fix((a + 1, b + 1)), angle, 0, 360, color("outline"), -1, lt,
              _SHIFT)
  cv2.ellipse(img, _fix(c), _fix((a, b)), angle, 0, 360, color("skin"), -1, lt, _SHIFT)
  dark = 255 if as_mask else tuple(.55 * v for v in col["skin"])
  for k, r in ((0, .012), (1, .014), (2, .014), (3, .016), (4, .016)):   # nose, eyes, ears
    eye = (25, 25, 25) if not as_mask and k in (1, 2) else dark
    cv2.circle(img, _fix(j[k]), _fix([max(1., r * h)])[0], eye, -1, lt, _SHIFT)
  for name, (sho, elb, wri) in (("right", (6, 8, 10)), ("left", (5, 7, 9))):
    limb(sho, elb, arm_t, name)
    limb(elb, wri, arm_t, name)


def make_background(rng: np.random.Generator, image_hw: tuple[int, int]) -> np.ndarray:
  """[H, W, 3] uint8 BGR: a random linear gradient, then 3-12 random rectangles, circles and
  bars, blurred a little."""
  hgt, wid = image_hw
  c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
  theta = rng.uniform(0, 2 * np.pi)
  yy, xx = np.mgrid[0:hgt, 0:wid]
  t = (xx * np.cos(theta) + yy * np.sin(theta)) / np.hypot(hgt, wid) + .5
  img = np.ascontiguousarray((c0 + (c1 - c0) * t[..., None]).clip(0, 255).astype(np.uint8))
  for _ in range(rng.integers(3, 13)):
    color = tuple(float(v) for v in rng.uniform(0, 255, 3))
    p, q = rng.uniform(-.1, 1.1, 2) * (wid, hgt), rng.uniform(-.1, 1.1, 2) * (wid, hgt)
    kind, fill = rng.integers(3), -1 if rng.random() < .6 else int(rng.integers(1, 5))
    if kind == 0:
      cv2.rectangle(img, _fix(p), _fix(q), color, fill, cv2.LINE_AA, _SHIFT)
    elif kind == 1:
      radius = rng.uniform(.03, .2) * min(hgt, wid)
      cv2.circle(img, _fix(p), _fix([radius])[0], color, fill, cv2.LINE_AA, _SHIFT)
    else:
      cv2.line(img, _fix(p), _fix(q), color, int(rng.integers(2, 12)), cv2.LINE_AA, _SHIFT)
  k = int(rng.choice([1, 3, 5]))
  return cv2.GaussianBlur(img, (k, k), 0) if k > 1 else img


def visible_joints(fig: Figure, front_masks: list[np.ndarray]) -> np.ndarray:
  """[17] int v of ``fig``'s joints: 0 outside the image, 1 under any of ``front_masks``
  (the people drawn after it), else 2."""
  hgt, wid = fig.mask.shape
  x, y = fig.joints[:, 0], fig.joints[:, 1]
  inside = (x >= 0) & (x < wid) & (y >= 0) & (y < hgt)
  xi = np.clip(np.round(x).astype(int), 0, wid - 1)
  yi = np.clip(np.round(y).astype(int), 0, hgt - 1)
  covered = np.zeros(len(x), bool)
  for m in front_masks:
    covered |= m[yi, xi] > 0
  return np.where(inside, np.where(covered, 1, 2), 0)


def box_of(mask: np.ndarray) -> np.ndarray:
  """[4] (x, y, w, h) tight box of a mask's non-zero pixels (all zero: w = h = 0)."""
  return np.array(cv2.boundingRect(mask), np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
  """IoU of two (x, y, w, h) boxes."""
  iw = max(0., min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
  ih = max(0., min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
  union = a[2] * a[3] + b[2] * b[3] - iw * ih
  return float(iw * ih / union) if union > 0 else 0.


def _acceptable(cand: Figure, scene: list[Figure], min_inside: int) -> bool:
  """A candidate in front of ``scene`` keeps >= MIN_VISIBLE visible joints of everyone behind
  and has >= ``min_inside`` joints in the image."""
  if (visible_joints(cand, []) > 0).sum() < min_inside:
    return False
  masks = [f.mask for f in scene] + [cand.mask]
  return all((visible_joints(f, masks[i + 1:]) == 2).sum() >= MIN_VISIBLE
             for i, f in enumerate(scene))


def add_loose(rng: np.random.Generator, scene: list[Figure], image_hw: tuple[int, int],
              height_range: tuple[float, float], max_iou: float = 1.,
              min_inside: int = 6, tries: int = 30) -> Figure | None:
  """Places a random person in front of ``scene`` (box IoU with each <= ``max_iou``);
  appends and returns it, or None after ``tries`` failed placements."""
  hgt, wid = image_hw
  fig = make_figure(rng, rng.uniform(*height_range))
  e = extent(fig)
  half, slack = (e[2:] - e[:2]) / 2, .15 * (e[2:] - e[:2])
  lo, hi = half - slack, np.array([wid, hgt]) - half + slack
  for _ in range(tries):
    cand = place(fig, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), image_hw)
    box = box_of(cand.mask)
    if (_acceptable(cand, scene, min_inside)
        and all(box_iou(box, box_of(f.mask)) <= max_iou for f in scene)):
      scene.append(cand)
      return cand
  return None


def add_pair(rng: np.random.Generator, scene: list[Figure], image_hw: tuple[int, int],
             tries: int = 60) -> bool:
  """A back person B and a front person A of similar size, boxes at IoU within PAIR_IOU, B
  partly covered by A (>= 1 joint occluded, >= MIN_VISIBLE visible). False if none fit."""
  for _ in range(3):
    start = len(scene)
    back = add_loose(rng, scene, image_hw, (90., 200.), min_inside=12)
    if back is None:
      continue
    e = extent(back)
    size = e[2:] - e[:2]
    front = make_figure(rng, float(np.clip(back.height * rng.uniform(.8, 1.2), 60, 220)))
    for _ in range(tries):
      dx = rng.choice([-1, 1]) * rng.uniform(*PAIR_SHIFT) * size[0]
      dy = rng.uniform(-.1, .1) * size[1]
      cand = place(front, (e[:2] + e[2:]) / 2 + (dx, dy), image_hw)
      iou = box_iou(box_of(back.mask), box_of(cand.mask))
      if (PAIR_IOU[0] <= iou <= PAIR_IOU[1] and _acceptable(cand, scene, 8)
          and (visible_joints(back, [cand.mask]) == 1).any()):
        scene.append(cand)
        return True
    del scene[start:]
  return False


def make_scene(rng: np.random.Generator, image_hw: tuple[int, int]
               ) -> tuple[str, list[Figure]]:
  """A scene kind (SCENES) and its people, back to front (at least one person)."""
  kind = SCENES[rng.choice(len(SCENES), p=SCENE_PROBS)]
  scene: list[Figure] = []
  if kind == "pair":
    if rng.random() < .4:
      add_loose(rng, scene, image_hw, (60., 130.))
    if not add_pair(rng, scene, image_hw):
      kind = "single"         # rare: no fitting pair; at most the extra person is left
  elif kind == "crowd":
    for _ in range(rng.integers(3, 6)):
      add_loose(rng, scene, image_hw, (60., 140.), max_iou=.3)
  while not scene:
    add_loose(rng, scene, image_hw, (80., 200.), min_inside=10)
  return ("single" if len(scene) == 1 else kind), scene


def annotate(scene: list[Figure]) -> list[dict]:
  """COCO annotation fields (no ids) of each person: bbox = tight box of the drawn body
  clipped to the image, area = bbox area, keypoints [51] with (0, 0, 0) when v = 0."""
  anns = []
  for i, fig in enumerate(scene):
    v = visible_joints(fig, [f.mask for f in scene[i + 1:]])
    kpts = np.concatenate([np.where(v[:, None] > 0, fig.joints, 0.), v[:, None]], axis=1)
    box = box_of(fig.mask)
    anns.append(dict(
        category_id=1, iscrowd=0, bbox=[int(b) for b in box], area=int(box[2] * box[3]),
        keypoints=[float(k) if c < 2 else int(k) for row in kpts for c, k in enumerate(row)],
        num_keypoints=int((v > 0).sum())))
  return anns


def render(seed: int, split_index: int, index: int, image_hw: tuple[int, int]
           ) -> tuple[np.ndarray, str, list[dict]]:
  """Image ``index`` of a split: (BGR uint8 [H, W, 3], scene kind, annotations)."""
  rng = np.random.default_rng([seed, split_index, index])
  img = make_background(rng, image_hw)
  kind, scene = make_scene(rng, image_hw)
  for fig in scene:
    draw_figure(img, fig)
  noise = rng.standard_normal(img.shape, np.float32) * rng.uniform(2., 8.)
  img = np.clip(img + noise, 0, 255).astype(np.uint8)
  return img, kind, annotate(scene)


def _build_image(job: tuple) -> tuple[str, list[dict]]:
  """Worker: renders one image and writes its JPEG; returns (scene kind, annotations)."""
  seed, split_index, index, image_hw, path = job
  cv2.setNumThreads(1)
  img, kind, anns = render(seed, split_index, index, image_hw)
  if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
    raise OSError(f"{path}: cannot write the image")
  return kind, anns


def categories() -> list[dict]:
  """The COCO person category with its 17 keypoints and skeleton."""
  return [dict(supercategory="person", id=1, name="person",
               keypoints=list(COCO.keypoint_names), skeleton=[list(s) for s in SKELETON])]


def _write_json(path: str, data: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, separators=(",", ":"))
  os.replace(tmp, path)


def write_split(root: str, split: str, seed: int, num_images: int,
                image_hw: tuple[int, int], pool=None) -> str:
  """Renders one split's JPEGs and writes its annotation file; returns the file's path."""
  split_index = SPLITS.index(split)
  image_dir = os.path.join(root, "images", split)
  os.makedirs(image_dir, exist_ok=True)
  names = [f"{i + 1:012d}.jpg" for i in range(num_images)]
  for stale in set(filter(_FILE_RE.match, os.listdir(image_dir))) - set(names):
    os.remove(os.path.join(image_dir, stale))
  jobs = [(seed, split_index, i, tuple(image_hw), os.path.join(image_dir, n))
          for i, n in enumerate(names)]
  results = pool.map(_build_image, jobs, chunksize=16) if pool else map(_build_image, jobs)
  images, annotations = [], []
  for i, (kind, anns) in enumerate(results):
    images.append(dict(id=i + 1, file_name=names[i], height=image_hw[0], width=image_hw[1],
                       scene=kind))
    for ann in anns:
      annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, **ann))
  path = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  info = dict(description=f"mipnet_jax synthetic crowd v{VERSION}, seed {seed}",
              version=str(VERSION))
  _write_json(path, dict(info=info, licenses=[], images=images, annotations=annotations,
                         categories=categories()))
  # The crowded subset: images whose scene is an occluding pair (the boxes holding two
  # people, where a single-instance network fails).
  pair_ids = {img["id"] for img in images if img["scene"] == "pair"}
  _write_json(path.replace(".json", "_pairs.json"), dict(
      info=info, licenses=[], images=[img for img in images if img["id"] in pair_ids],
      annotations=[a for a in annotations if a["image_id"] in pair_ids],
      categories=categories()))
  # Boxes of a simulated detector (confidence falls with occlusion), for the detection
  # protocol and the confidence sweep.
  det_path = os.path.join(root, "annotations", f"person_detections_{split}.json")
  simulated_detector.write_detections(
      dict(images=images, annotations=annotations), [seed, split_index, 0x5D], det_path,
      {det_path.replace(".json", "_pairs.json"): pair_ids})
  return path


def split_summary(root: str, split: str, input_hw: tuple[int, int] = (256, 192)) -> dict:
  """Counts of a written split, through the repo's reader: images, boxes, multi-instance
  boxes (the padded crop holds >= 4 labelled joints of another person), pair images, skips."""
  ann_path = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
  records, report = load_person_records(ann_path, COCO, os.path.join(root, "images", split),
                                        input_hw)
  with open(ann_path) as f:
    pairs = sum(img["scene"] == "pair" for img in json.load(f)["images"])
  return dict(images=report.num_images, boxes=len(records),
              multi_instance=count_multi_instance(records), pair_images=pairs,
              skipped=dict(report.skipped))


def manifest_params(seed: int, num_train: int, num_val: int,
                    image_hw: tuple[int, int]) -> dict:
  """What a folder's MANIFEST.json must hold (besides counts) to match a request."""
  return dict(generator="mipnet_jax.data.synthetic", version=VERSION, seed=int(seed),
              num_train=int(num_train), num_val=int(num_val), image_hw=[int(v) for v in image_hw])


def generate(root: str, seed: int = 0, num_train: int = 1500, num_val: int = 200,
             image_hw: tuple[int, int] = (256, 256), workers: int = 2) -> dict:
  """Writes the dataset under ``root`` (module docstring) and returns the manifest: the
  parameters and, per split, ``split_summary`` counts. ``workers`` > 1 renders in "spawn"
  processes (safe next to JAX's threads; the calling script needs a ``__main__`` guard)."""
  manifest_path = os.path.join(root, "MANIFEST.json")
  if os.path.exists(manifest_path):
    os.remove(manifest_path)           # a half-written folder never matches a request
  os.makedirs(root, exist_ok=True)
  counts = dict(train=num_train, val=num_val)
  pool = None
  if workers > 1:
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"))
  try:
    for split in SPLITS:
      write_split(root, split, seed, counts[split], image_hw, pool)
  finally:
    if pool:
      pool.shutdown()
  manifest = manifest_params(seed, num_train, num_val, image_hw)
  manifest["counts"] = {split: split_summary(root, split) for split in SPLITS}
  _write_json(manifest_path, manifest)
  return manifest


def ensure(root: str, seed: int = 0, num_train: int = 1500, num_val: int = 200,
           image_hw: tuple[int, int] = (256, 256), workers: int = 2) -> dict:
  """``generate`` unless ``root/MANIFEST.json`` already records these parameters (only the
  manifest is checked, not the files); returns the manifest."""
  try:
    with open(os.path.join(root, "MANIFEST.json")) as f:
      manifest = json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    manifest = {}
  wanted = manifest_params(seed, num_train, num_val, image_hw)
  if all(manifest.get(k) == v for k, v in wanted.items()):
    return manifest
  return generate(root, seed, num_train, num_val, image_hw, workers)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="output folder")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_train", type=int, default=1500)
  parser.add_argument("--num_val", type=int, default=200)
  parser.add_argument("--image_hw", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args(argv)
  manifest = generate(args.root, args.seed, args.num_train, args.num_val,
                      tuple(args.image_hw), args.workers)
  print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
  main()
