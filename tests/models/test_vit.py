"""ViTPose (models/vit.py): the official cost (parameters and MACs of the reference file),
the architecture facts that a forward pass shows without a second implementation (the two
never-read input rows and columns, the position embedding's slot 0, pre-norm residuals,
stochastic depth), MIPNet-ViT's trunk / head split and the slot placement field. The
side-by-side check with PyTorch is tests/oracles/test_torch_reference.py; the official
state_dict layout, tests/interop/test_torch_import.py."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.experiments import ARCHS
from mipnet_jax.models.build import build_model
from mipnet_jax.models.cost import count_cost
from mipnet_jax.models.mimb import encode_lambda
from mipnet_jax.models.summary import count_params
from mipnet_jax.models.variables import abstract_variables

HW = (64, 48)          # 4 x 3 patches; heatmaps 16 x 12
SIZES = ("s", "b", "l", "h")


@pytest.fixture(scope="module")
def reference(shared_data):
  path = shared_data / "reference" / "vitpose_state_dict_keys.json"
  if not path.exists():
    pytest.skip(f"{path} is absent")
  return json.loads(path.read_text())["models"]


@pytest.mark.parametrize("size", SIZES)
def test_parameters_and_macs_equal_the_reference_file(reference, size):
  ref = reference[f"vitpose_{size}_coco_256x192"]
  model = build_model(ARCHS[f"vitpose_{size}"], 1)
  variables = abstract_variables(model, (256, 192))
  backbone = count_params(variables["params"]["backbone"])
  assert (count_params(variables["params"]), backbone) == (ref["params"], ref["params_backbone"])
  assert count_params(variables["batch_stats"]) == ref["bn_buffers"]

  def forward(v, x):
    return model.apply(v, x, jnp.zeros((1, 1)), train=False)

  image = jax.ShapeDtypeStruct((1, 256, 192, 3), jnp.float32)
  assert jax.eval_shape(forward, variables, image).shape == (1, 64, 48, 17)
  macs = count_cost(forward, variables, image).macs
  assert abs(macs / ref["macs_256x192"] - 1) < 0.01, (macs, ref["macs_256x192"])


def _images(seed=0, hw=HW, b=2):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, *hw, 3)), jnp.float32)


def test_the_last_two_rows_and_columns_are_never_read(tiny_model):
  model, v = tiny_model("vitpose", n=1, image_hw=HW)
  x = _images()
  lam = jnp.zeros((2, 1))
  base = model.apply(v, x, lam, train=False)
  # Patch embedding 16x16, stride 16, padding 2: the last patch covers input rows 46..61 of
  # a 64-row image, so rows 62, 63 (and columns 46, 47) never reach the network.
  unread = x.at[:, 62:].set(100.0).at[:, :, 46:].set(-100.0)
  np.testing.assert_array_equal(model.apply(v, unread, lam, train=False), base)
  read = x.at[:, 61].set(100.0)
  assert not np.allclose(model.apply(v, read, lam, train=False), base)


def test_position_slot_zero_is_added_to_every_patch(tiny_model):
  model, v = tiny_model("vitpose", n=1, image_hw=HW)
  x, lam = _images(), jnp.zeros((2, 1))
  table = v["params"]["backbone"]["pos_embed"]["embedding"]
  assert table.shape == (1, 1 + 4 * 3, 32)
  # Folding slot 0 into every patch slot (slot 0 then zero) keeps pos_embed[:, 1:] +
  # pos_embed[:, :1] bit for bit (p + 0 = p), so the output is the same; changing slot 0
  # alone moves it.
  folded = {"embedding": jnp.concatenate([jnp.zeros_like(table[:, :1]),
                                          table[:, 1:] + table[:, :1]], 1)}
  v2 = jax.tree.map(lambda a: a, v)
  v2["params"]["backbone"]["pos_embed"] = folded
  base = model.apply(v, x, lam, train=False)
  np.testing.assert_array_equal(model.apply(v2, x, lam, train=False), base)
  # (a shift that varies over the channels: LayerNorm would remove a constant one)
  shift = jnp.linspace(-0.5, 0.5, table.shape[-1])
  v2["params"]["backbone"]["pos_embed"] = {"embedding": table.at[:, 0].add(shift)}
  assert np.abs(model.apply(v2, x, lam, train=False) - base).max() > 1e-3


def test_an_input_of_another_size_is_refused(tiny_model):
  model, v = tiny_model("vitpose", n=1, image_hw=HW)
  with pytest.raises(ValueError, match="holds 12 patches but this input gives 8x6"):
    model.apply(v, jnp.zeros((1, 128, 96, 3)), jnp.zeros((1, 1)), train=False)


def test_shared_trunk_equals_the_per_lambda_calls(tiny_model):
  model, v = tiny_model("vitpose", n=2, image_hw=HW)
  x = _images(1, b=3)
  both = model.apply(v, x, 2, method=model.predict_instances)       # [B, N, h, w, K]
  for lam in range(2):
    code = encode_lambda(jnp.full((3,), lam), 2)
    np.testing.assert_allclose(both[:, lam], model.apply(v, x, code, train=False),
                               rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(both[:, 0] - both[:, 1]).max()) > 1e-3 * float(jnp.std(both))


def test_lambda_does_not_reach_the_baseline(tiny_model):
  model, v = tiny_model("vitpose", n=1, image_hw=HW)
  x = _images(2)
  a = model.apply(v, x, jnp.array([[1.0, 0.0]] * 2), train=False)
  b = model.apply(v, x, jnp.array([[0.0, 1.0]] * 2), train=False)
  np.testing.assert_array_equal(a, b)
  assert not any(k.endswith("_mimb") for k in v["params"])


@pytest.mark.parametrize("slots,blocks,trunk_blocks", [
    ((False, False, True, True), (), 3),           # default: quarters of depth 4
    ((False, False, False, True), (), 4),          # MIMB on the output only: head = deconvs
    ((False, True, False, True), (1, 2, 3, 4), 2),
])
def test_slot_placement_sets_the_trunk(tiny_model, slots, blocks, trunk_blocks):
  model, v = tiny_model("vitpose", n=2, image_hw=HW, mimb_slots=slots, slot_blocks=blocks)
  assert sorted(k for k in v["params"] if k.endswith("_mimb")) == [
      f"slot{k + 1}_mimb" for k, on in enumerate(slots) if on]
  x = _images(3)
  feats = model.apply(v, x, train=False, method=model.trunk)
  # The trunk's output is the token grid after `trunk_blocks` blocks (normalised after all 4).
  ref = model.apply(v, x, 0, trunk_blocks, train=False,
                    method=lambda m, x, a, b, train: m.backbone.blocks(m.backbone.embed(x), a, b,
                                                                       train=train))
  if trunk_blocks == 4:
    ref = model.apply(v, ref, method=lambda m, t: m.backbone.norm(t))
  np.testing.assert_allclose(feats[0], ref, rtol=1e-6)


def test_bad_slot_blocks_are_refused(tiny_model):
  with pytest.raises(ValueError, match="slot_blocks needs 4 increasing block counts ending at "
                                       r"depth=4, got \(1, 1, 2, 4\)"):
    tiny_model("vitpose", n=2, image_hw=HW, slot_blocks=(1, 1, 2, 4))


def test_drop_path_in_training_only(tiny_model):
  model, v = tiny_model("vitpose", n=1, image_hw=HW, drop_path_rate=0.5)
  x, lam = _images(4, b=8), jnp.zeros((8, 1))

  def train(seed):
    out, _ = model.apply(v, x, lam, train=True, mutable=["batch_stats"],
                         rngs={"dropout": jax.random.key(seed)})
    return out

  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  np.testing.assert_array_equal(model.apply(v, x, lam, train=False),
                                model.apply(v, x, lam, train=False))
