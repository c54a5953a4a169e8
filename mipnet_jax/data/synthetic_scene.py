"""The people and scenes of the synthetic crowd set (data/synthetic.py writes them to files).

A person is an articulated stick-and-blob figure with the 17 COCO joints, facing the camera: left
limbs (the person's left, the image's right) a lighter shade of the person's colour, right limbs
a darker one. A scene is a list of people, back to front: a "pair" (a back person B partly
covered by a front person A, box IoU within PAIR_IOU, A shifted sideways by PAIR_SHIFT of B's
width, so that each box holds most of the other person as in OCHuman), a loose "crowd" of 3-5
or a "single" person. A joint outside the image has v=0, one under a person drawn in front
v=1, otherwise v=2. Points are (x, y), sizes (h, w).
"""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np

SCENES = ("single", "pair", "crowd")
SCENE_PROBS = (0.15, 0.6, 0.25)
MIN_VISIBLE = 4        # a placement may not leave a person behind with fewer visible joints
PAIR_IOU = (0.4, 0.85)
PAIR_SHIFT = (0.15, 0.5)   # |dx| of the front person, in units of the back one's width
_SHIFT = 4             # cv2 fixed-point bits: sub-pixel drawing


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
