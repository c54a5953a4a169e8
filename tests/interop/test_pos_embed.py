"""Bicubic position-embedding resize (mipnet_jax/interop/pos_embed.py) against hand-computed
cubic-convolution weights and, when installed, PyTorch's F.interpolate(mode='bicubic',
align_corners=False), which the official ViTPose loader uses."""

import numpy as np
import pytest

from mipnet_jax.interop import pos_embed

# Keys' cubic convolution, a = -0.75, worked by hand: at offset t = 1/4 the taps f-1..f+2 sit
# at distances 5/4, 1/4, 3/4, 7/4: w(5/4) = -0.75*125/64 + 3.75*25/16 - 6*5/4 + 3
# = -27/256; w(1/4) = 1.25/64 - 2.25/16 + 1 = 225/256; w(3/4) = 67/256; w(7/4) = -9/256.
W_QUARTER = np.array([-27, 225, 67, -9]) / 256


def test_cubic_weights_by_hand():
  np.testing.assert_array_equal(pos_embed.cubic_weights(0.25), W_QUARTER)
  np.testing.assert_array_equal(pos_embed.cubic_weights(0.75), W_QUARTER[::-1])
  np.testing.assert_array_equal(pos_embed.cubic_weights(0.0), [0, 1, 0, 0])


def test_2x_upsample_rows_by_hand():
  # Output i samples x = (i + 0.5) / 2 - 0.5: i = 0 -> -1/4 (f = -1, t = 3/4, taps -2..1
  # clamped to 0, 0, 0, 1); i = 1 -> 1/4 (f = 0, t = 1/4, taps -1..2 clamped to 0, 0, 1, 2).
  m = pos_embed.bicubic_matrix(4, 8)
  np.testing.assert_array_equal(m[0], [(-9 + 67 + 225) / 256, -27 / 256, 0, 0])
  np.testing.assert_array_equal(m[1], [(-27 + 225) / 256, 67 / 256, -9 / 256, 0])
  np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-15)   # constants are kept
  out = pos_embed.bicubic_resize(np.array([0.0, 1.0, 0.0, 0.0])[None, :, None], (1, 8))
  assert out[0, :2, 0].tolist() == [-27 / 256, 67 / 256]


def test_same_grid_is_identity_and_cls_row_is_kept():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(1, 1 + 14 * 14, 8)).astype(np.float32)
  assert pos_embed.resize_pos_embed(table, (14, 14)) is table
  np.testing.assert_array_equal(pos_embed.bicubic_matrix(6, 6), np.eye(6))
  out = pos_embed.resize_pos_embed(table, (16, 12))
  assert out.shape == (1, 1 + 16 * 12, 8) and out.dtype == np.float32
  np.testing.assert_array_equal(out[:, 0], table[:, 0])


def test_grid_errors_name_the_field():
  with pytest.raises(ValueError, match="ckpt.pth: pos_embed: 15 patch positions are not a square"):
    pos_embed.resize_pos_embed(np.zeros((1, 16, 4)), (4, 4), name="ckpt.pth: pos_embed")
  with pytest.raises(ValueError, match=r"expected \[1, 1 \+ patches, C\]"):
    pos_embed.resize_pos_embed(np.zeros((16, 4)), (4, 4))


@pytest.mark.parametrize("src,dst", [((14, 14), (16, 12)), ((14, 14), (24, 18)),
                                     ((5, 7), (3, 11))])
def test_matches_torch_bicubic(src, dst):
  torch = pytest.importorskip("torch", reason="torch not installed; torch comparison skipped")
  import torch.nn.functional as F

  def torch_resize(grid):
    x = torch.from_numpy(grid).permute(2, 0, 1)[None]
    return F.interpolate(x, size=dst, mode="bicubic", align_corners=False)[0].permute(
        1, 2, 0).numpy()

  grid = np.random.default_rng(0).normal(size=(*src, 16))
  # float64: the same formula to rounding
  np.testing.assert_allclose(pos_embed.bicubic_resize(grid, dst), torch_resize(grid),
                             rtol=0, atol=1e-12)
  # float32 at a pos_embed's scale (trunc-normal 0.02): within 1e-6
  grid32 = (0.02 * grid).astype(np.float32)
  assert np.abs(pos_embed.bicubic_resize(grid32, dst) - torch_resize(grid32)).max() <= 1e-6
