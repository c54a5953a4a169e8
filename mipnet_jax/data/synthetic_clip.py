"""A synthetic video for the video mode's tests and demo (``scripts/track_clip.py``): three
figures of the synthetic crowd set on one background. A walks right, B walks left and passes
in front of A mid-clip, C stands apart. Sizes are (h, w), points (x, y).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from mipnet_jax.data import synthetic_scene as scene

CLIP_HW = (160, 256)
FIGURE_HEIGHT = 110.0


@dataclasses.dataclass(frozen=True)
class ClipTruth:
  """The clip's people, frame by frame: joints [F, 3, 17, 2] (x, y) and boxes [F, 3, 4]
  (x, y, w, h) of A, B and C (B drawn in front of A)."""

  joints: np.ndarray
  boxes: np.ndarray

  def apart(self, min_dx: float = 40.0) -> np.ndarray:
    """[F] True where A's and B's mean joint x differ by at least ``min_dx`` pixels."""
    x = self.joints[..., 0].mean(-1)
    return np.abs(x[:, 0] - x[:, 1]) >= min_dx


def walking_clip(path: str, frames: int = 60, seed: int = 0, fourcc: str = "mp4v",
                 fps: float = 10.0, image_hw: tuple[int, int] = CLIP_HW) -> ClipTruth:
  """Writes the clip to ``path`` (``fourcc``: mp4v for .mp4, MJPG for .avi) and returns its
  ``ClipTruth``."""
  h, w = image_hw
  rng = np.random.default_rng(seed)
  background = scene.make_background(rng, image_hw)
  people = [scene.make_figure(rng, FIGURE_HEIGHT) for _ in range(3)]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
  joints, boxes = [], []
  for t in np.linspace(0, 1, frames):
    centers = [(0.16 * w + 0.55 * w * t, 0.53 * h), (0.7 * w - 0.55 * w * t, 0.56 * h),
               (0.906 * w, 0.5 * h)]
    placed = [scene.place(p, c, image_hw) for p, c in zip(people, centers)]
    image = background.copy()
    for fig in placed:
      scene.draw_figure(image, fig)
    writer.write(image)
    joints.append([fig.joints for fig in placed])
    boxes.append([scene.box_of(fig.mask) for fig in placed])
  writer.release()
  return ClipTruth(np.asarray(joints), np.asarray(boxes))
