"""HRNet and SimpleBaseline: official parameter counts and layouts, lambda semantics, the
shared-trunk inference. Full-size models only through jax.eval_shape (no compile)."""

from __future__ import annotations

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.models import build_model, encode_lambda
from mipnet_jax.models.summary import abstract_variables, count_params, mimb_param_count

HW = (256, 192)
OFFICIAL = {  # trainable parameters of the official PyTorch models (BN statistics excluded)
    "hrnet_w32": ({"name": "hrnet", "width": 32}, 28_536_113, 67_200),
    "hrnet_w48": ({"name": "hrnet", "width": 48}, 63_595_745, 150_336),
    "resnet50_simple_baseline": ({"name": "simple_baseline", "depth": 50}, 33_999_697, 986_496),
    "resnet101_simple_baseline": ({"name": "simple_baseline", "depth": 101}, 52_991_825, None),
    "resnet152_simple_baseline": ({"name": "simple_baseline", "depth": 152}, 68_635_473, None),
}
TINY_HRNET = {"name": "hrnet", "width": 4, "stage_modules": (1, 1, 1), "num_blocks": 1}
TINY_SBL = {"name": "simple_baseline", "depth": 50, "base_width": 4,
            "deconv_features": (8, 8, 8)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_parameter_counts(name):
  cfg, baseline, extra = OFFICIAL[name]
  base = abstract_variables(build_model(cfg, 1), HW)["params"]
  assert count_params(base) == baseline
  mip = abstract_variables(build_model(cfg, 2), HW)["params"]
  if extra is not None:
    assert count_params(mip) - baseline == extra == mimb_param_count(mip)


def _torch_layout_shapes(variables):
  """Our variables as the multiset of PyTorch state_dict shapes (layout conversion only)."""
  shapes = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    name, s = path[-1].key, tuple(leaf.shape)
    if name == "kernel" and len(s) == 4:
      is_deconv = any("deconv" in str(getattr(p, "key", "")) for p in path)
      s = (s[2], s[3], s[0], s[1]) if is_deconv else (s[3], s[2], s[0], s[1])
    elif name == "kernel":   # Dense [in, out] -> Linear [out, in]
      s = (s[1], s[0])
    shapes.append(s)
  return collections.Counter(shapes)


@pytest.mark.parametrize("name,reference,n", [
    ("hrnet_w32", "official_state_dict_keys.json", 1),
    ("hrnet_w48", "official_state_dict_keys.json", 1),
    ("resnet50_simple_baseline", "official_state_dict_keys.json", 1),
    ("resnet152_simple_baseline", "official_state_dict_keys.json", 1),
    ("hrnet_w32", "mipnet_official_state_dict_keys.json", 2),
    ("resnet50_simple_baseline", "mipnet_official_state_dict_keys.json", 2),
])
def test_tensor_shapes_equal_official_state_dict(shared_data, name, reference, n):
  layout = json.loads((shared_data / "reference" / reference).read_text())["models"]
  key = name if n == 1 else f"mipnet_{name}"
  expected = collections.Counter(tuple(s) for _, s in layout[key])
  ours = _torch_layout_shapes(abstract_variables(build_model(OFFICIAL[name][0], n), HW))
  assert ours == expected
  assert sum(ours.values()) == len(layout[key])


@pytest.mark.parametrize("cfg", [TINY_HRNET, TINY_SBL], ids=["hrnet", "sbl"])
def test_baseline_names_are_shared_by_mipnet(cfg):
  def names(n):
    v = abstract_variables(build_model(cfg, n), (64, 64))
    return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(v)[0]}
  base, mip = names(1), names(2)
  assert base < mip
  assert all("_mimb'" in n for n in mip - base)


def _init_randomized(model, hw, seed=0):
  """Initialises ``model`` and replaces every MIMB parameter by N(0, 1) values, so that
  lambda has a large effect (at the reference init its gates are all ~0.5)."""
  x = jnp.zeros((1, *hw, 3))
  v = model.init(jax.random.key(seed), x, jnp.zeros((1, model.lambda_dim)), train=False)
  params = dict(v["params"])
  for k in params:
    if k.endswith("_mimb"):
      leaves, tdef = jax.tree.flatten(params[k])
      keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
      params[k] = jax.tree.unflatten(tdef, [jax.random.normal(kk, l.shape)
                                            for kk, l in zip(keys, leaves)])
  return {"params": params, "batch_stats": v["batch_stats"]}


@pytest.fixture(scope="module", params=["hrnet", "sbl"])
def tiny(request):
  cfg = TINY_HRNET if request.param == "hrnet" else TINY_SBL
  images = jax.random.normal(jax.random.key(3), (2, 64, 64, 3))
  return cfg, images


def test_shapes_and_lambda_effect(tiny):
  cfg, images = tiny
  for n in (1, 2):
    model = build_model(cfg, n)
    v = _init_randomized(model, (64, 64))
    apply = jax.jit(lambda v, x, lam: model.apply(v, x, lam, train=False))
    outs = [apply(v, images, encode_lambda(jnp.full((2,), k), model.lambda_dim))
            for k in range(model.lambda_dim)]
    assert outs[0].shape == (2, 16, 16, 17) and outs[0].dtype == jnp.float32
    scale = float(jnp.abs(outs[0]).mean())
    delta = float(jnp.abs(outs[-1] - outs[0]).mean())
    if n == 1:
      assert delta == 0.0
    else:
      assert delta > 0.05 * scale, (delta, scale)


def test_shared_trunk_prediction_equals_full_network(tiny):
  cfg, images = tiny
  model = build_model(cfg, 3)
  v = _init_randomized(model, (64, 64))
  heat = jax.jit(lambda v, x: model.apply(v, x, 3, method=model.predict_instances))(v, images)
  assert heat.shape == (2, 3, 16, 16, 17)
  apply = jax.jit(lambda v, x, lam: model.apply(v, x, lam, train=False))
  for k in range(3):
    full = apply(v, images, encode_lambda(jnp.full((2,), k), 3))
    np.testing.assert_allclose(np.asarray(heat[:, k]), np.asarray(full), rtol=1e-5, atol=1e-6)


def test_train_mode_updates_batch_stats_and_bf16_keeps_fp32_state(tiny):
  cfg, images = tiny
  model = build_model({**cfg, "dtype": "bfloat16"}, 2)
  v = model.init(jax.random.key(0), images, jnp.zeros((2, 2)), train=False)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  lam = encode_lambda(jnp.array([0, 1]), 2)
  out, upd = jax.jit(lambda v, x, lam: model.apply(v, x, lam, train=True,
                                                   mutable=["batch_stats"]))(v, images, lam)
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), v["batch_stats"], upd["batch_stats"])
  assert all(jax.tree.leaves(changed))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(upd))


def test_only_embed_and_reduce_change_parameter_counts():
  cfg = {"name": "hrnet", "width": 32}
  def mimb_params(**kw):
    return mimb_param_count(abstract_variables(build_model({**cfg, **kw}, 2), HW)["params"])
  r4 = mimb_params()
  assert r4 == 67_200
  c = [32, 64, 128, 256, 32]   # 4 MIMBs on the stage-4 inputs, 1 on its output
  ex = lambda r: sum(2 * ci * ci // r for ci in c)
  assert mimb_params(mimb_only_embed=True) == r4 - ex(4)
  em = lambda r: sum(3 * (ci // r) + 2 * (ci // r) + (ci // r + 1) * ci for ci in c)
  assert mimb_params(mimb_reduce=2) == ex(2) + em(2)
  assert mimb_params(mimb_reduce=1) == ex(1) + em(1)


def test_invalid_instance_counts_are_rejected():
  with pytest.raises(ValueError, match="1..4"):
    build_model(TINY_HRNET, 5)
  model = build_model(TINY_HRNET, 1)
  v = abstract_variables(model, (64, 64))
  with pytest.raises(ValueError, match="without MIMB"):
    jax.eval_shape(lambda v, x: model.apply(v, x, 2, method=model.predict_instances),
                   v, jnp.zeros((1, 64, 64, 3)))


def test_hrnet_rejects_input_not_divisible_by_32():
  model = build_model(TINY_HRNET, 1)
  with pytest.raises(ValueError, match="divisible by 32"):
    abstract_variables(model, (64, 48))
