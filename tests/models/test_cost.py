"""The jaxpr cost counter: hand-computed cases, the official models' true multiply-adds and
the supplementary's Table 2 GFLOPs (full-size models, traced only, never compiled)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from mipnet_jax.models import layers
from mipnet_jax.models.cost import count_cost
from mipnet_jax.models.summary import instance_cost


def test_hand_computed_conv_dense_and_deconv():
  x = jax.ShapeDtypeStruct((2, 8, 6, 3), jnp.float32)
  conv = layers.conv(5, 3, 2, dtype=jnp.float32, name=None)
  v = jax.eval_shape(lambda: conv.init(jax.random.key(0), jnp.zeros(x.shape)))
  c = count_cost(conv.apply, v, x)
  assert c.macs == c.paper == 2 * 4 * 3 * 5 * 9 * 3   # out elements x taps x Cin

  w = jax.ShapeDtypeStruct((7, 4), jnp.float32)
  c = count_cost(lambda w, a: a @ w, w, jax.ShapeDtypeStruct((3, 7), jnp.float32))
  assert c.macs == c.paper == 3 * 4 * 7

  deconv = layers.ConvTranspose4x4(6)
  v = jax.eval_shape(lambda: deconv.init(jax.random.key(0), jnp.zeros(x.shape)))
  c = count_cost(deconv.apply, v, x)
  true = 2 * 8 * 6 * 16 * 3 * 6        # every input pixel meets 16 taps
  assert c.macs == true
  assert c.paper == 2 * 16 * 12 * (16 * 3 * 6)   # HRNet counter: weights x output area


TRUE_GMACS_N1 = [   # the official models' true multiply-adds (10^9), per box
    ("hrnet_w32_coco_256x192", 7.645), ("hrnet_w48_coco_256x192", 15.692),
    ("hrnet_w32_coco_384x288", 17.201), ("hrnet_w48_coco_384x288", 35.307),
    ("sbl_r50_coco_256x192", 5.426), ("sbl_r101_coco_256x192", 9.063),
    ("sbl_r152_coco_256x192", 12.699),
]
TABLE2 = [   # supplementary Table 2: (baseline GFLOPs, MIPNet N=2 GFLOPs)
    ("sbl_r50_coco_256x192", 8.90, 16.3), ("sbl_r101_coco_256x192", 12.4, 23.1),
    ("sbl_r152_coco_256x192", 15.7, 29.1), ("sbl_r50_coco_384x288", 20.2, 36.7),
    ("sbl_r101_coco_384x288", 27.8, 51.9), ("sbl_r152_coco_384x288", 35.5, 65.4),
    ("hrnet_w32_coco_256x192", 7.10, 9.80), ("hrnet_w48_coco_256x192", 14.6, 20.7),
    ("hrnet_w32_coco_384x288", 16.0, 22.1), ("hrnet_w48_coco_384x288", 32.9, 46.5),
]


def _paper_and_true(load_config, name, n):
  cfg = load_config(name)
  cost = instance_cost(cfg.model, tuple(cfg.data.image_hw), n, with_xla=False)
  return cost["paper_gflops"], cost["macs"] / 1e9


@pytest.mark.parametrize("name,expected", TRUE_GMACS_N1)
def test_true_macs_of_official_models(load_config, name, expected):
  _, true = _paper_and_true(load_config, name, 1)
  assert abs(true - expected) / expected < 0.03, true


@pytest.mark.parametrize("name,baseline,mipnet", TABLE2)
def test_table2_gflops(load_config, name, baseline, mipnet):
  paper1, _ = _paper_and_true(load_config, name, 1)
  paper2, _ = _paper_and_true(load_config, name, 2)
  assert abs(paper1 - baseline) / baseline < 0.02, paper1
  assert abs(paper2 - mipnet) / mipnet < 0.02, paper2


def test_cost_grows_as_trunk_plus_n_heads(load_config):
  cfg = load_config("hrnet_w32_coco_256x192")
  macs = {n: instance_cost(cfg.model, tuple(cfg.data.image_hw), n, with_xla=False)["macs"] / 1e9
          for n in (1, 2, 4)}
  head = macs[2] - macs[1] + 0.0   # MIMB linears are negligible
  assert abs(macs[4] - 16.3) < 0.1, macs
  assert abs((macs[4] - macs[2]) - 2 * head) < 0.01
  assert macs[4] < 0.6 * 4 * macs[1]
