"""Resizing a ViT's position embedding to another patch grid, as PyTorch does it.

The official ViTPose loader (mmcv_custom/checkpoint.py ``load_checkpoint``) fits MAE's
14x14 (+1 cls) table to the pose model's grid (16x12 at 256x192) with
``F.interpolate(mode='bicubic', align_corners=False)`` on the [1, C, 14, 14] grid, the extra
(cls) rows kept as they are. This is that resize in numpy (no torch needed):

  * output pixel i samples the input at ``x = (i + 0.5) * in / out - 0.5`` (not clamped);
  * with ``f = floor(x)``, ``t = x - f``, it mixes inputs f-1 .. f+2, their indices clamped
    to [0, in - 1], with Keys' cubic convolution weights (a = -0.75):
    ``w(d) = (a+2)|d|^3 - (a+3)|d|^2 + 1`` for |d| <= 1,
    ``w(d) = a|d|^3 - 5a|d|^2 + 8a|d| - 4a`` for 1 < |d| < 2;
  * separable: rows, then columns (no antialiasing when shrinking, as in PyTorch's default).

Weights are computed in float64; the result is cast back to the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np

CUBIC_A = -0.75


def cubic_weights(t: np.ndarray, a: float = CUBIC_A) -> np.ndarray:
  """[..., 4] weights of the taps f-1, f, f+1, f+2 for fractional offsets t in [0, 1)."""
  t = np.asarray(t, np.float64)[..., None]
  d = np.abs(t - np.array([-1.0, 0.0, 1.0, 2.0]))            # distances to the 4 taps
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] float64: output = matrix @ input along one axis, as PyTorch's
  bicubic interpolation with align_corners=False (borders clamped)."""
  x = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
  f = np.floor(x)
  w = cubic_weights(x - f)                                    # [out, 4]
  taps = np.clip(f[:, None].astype(np.int64) + np.arange(-1, 3), 0, size_in - 1)
  m = np.zeros((size_out, size_in))
  np.add.at(m, (np.repeat(np.arange(size_out), 4), taps.ravel()), w.ravel())
  return m


def bicubic_resize(grid: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
  """[H, W, C] -> [h, w, C] (sizes (h, w)): ``F.interpolate(mode='bicubic',
  align_corners=False)`` of the channels-first grid, in the input's dtype."""
  grid = np.asarray(grid)
  rows = bicubic_matrix(grid.shape[0], size_hw[0])
  cols = bicubic_matrix(grid.shape[1], size_hw[1])
  out = np.einsum("ih,hwc,jw->ijc", rows, grid.astype(np.float64), cols)
  return out.astype(grid.dtype)


def resize_pos_embed(pos_embed: np.ndarray, grid_hw: tuple[int, int], *,
                     num_extra: int = 1, source_grid_hw: tuple[int, int] | None = None,
                     name: str = "pos_embed") -> np.ndarray:
  """[1, num_extra + h*w, C] -> [1, num_extra + H*W, C] for the patch grid ``grid_hw`` = (H, W).

  The source grid is ``source_grid_hw`` or, as the official loader assumes, square. The
  ``num_extra`` leading rows (MAE's cls position) are kept; the rest, row-major (h, w), are
  resized bicubically. Returns the input itself when the grids already agree."""
  pos_embed = np.asarray(pos_embed)
  if pos_embed.ndim != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[1] <= num_extra:
    raise ValueError(f"{name}: expected [1, {num_extra} + patches, C], got "
                     f"{list(pos_embed.shape)}")
  n = pos_embed.shape[1] - num_extra
  if source_grid_hw is None:
    side = math.isqrt(n)
    if side * side != n:
      raise ValueError(f"{name}: {n} patch positions are not a square grid; give its "
                       "(h, w)")
    source_grid_hw = (side, side)
  if source_grid_hw[0] * source_grid_hw[1] != n:
    raise ValueError(f"{name}: {n} patch positions do not form a {source_grid_hw} grid")
  if tuple(source_grid_hw) == tuple(grid_hw):
    return pos_embed
  c = pos_embed.shape[2]
  grid = bicubic_resize(pos_embed[0, num_extra:].reshape(*source_grid_hw, c), grid_hw)
  return np.concatenate([pos_embed[:, :num_extra], grid.reshape(1, -1, c)], axis=1)
