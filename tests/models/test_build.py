"""build_model: HRNet and SimpleBaseline with official parameter counts and layouts, the
config checks, lambda semantics and the shared-trunk inference. Full-size models only through
jax.eval_shape (no compile); the forward passes on conftest's tiny models."""

from __future__ import annotations

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.models import build_model, encode_lambda
from mipnet_jax.models.variables import abstract_variables
from mipnet_jax.models.summary import count_params, mimb_param_count

HW = (256, 192)
OFFICIAL = {  # trainable parameters of the official PyTorch models (BN statistics excluded)
    "hrnet_w32": ({"name": "hrnet", "width": 32}, 28_536_113, 67_200),
    "hrnet_w48": ({"name": "hrnet", "width": 48}, 63_595_745, 150_336),
    "resnet50_simple_baseline": ({"name": "simple_baseline", "depth": 50}, 33_999_697, 986_496),
    "resnet101_simple_baseline": ({"name": "simple_baseline", "depth": 101}, 52_991_825, None),
    "resnet152_simple_baseline": ({"name": "simple_baseline", "depth": 152}, 68_635_473, None),
}
TINY_HW = (64, 64)          # HRNet needs sides divisible by 32


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


@pytest.mark.parametrize("arch", ["hrnet", "simple_baseline"])
def test_baseline_names_are_shared_by_mipnet(tiny_model, arch):
  def names(n):
    _, v = tiny_model(arch, n=n, image_hw=TINY_HW)
    return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(v)[0]}
  base, mip = names(1), names(2)
  assert base < mip
  prefix = "stage" if arch == "hrnet" else "layer"
  # mimb_slots (False, False, True, True): the groups on slots 3 and 4, nothing else.
  assert {n.split("'")[3] for n in mip - base} == {f"{prefix}3_mimb", f"{prefix}4_mimb"}


@pytest.fixture(scope="module", params=["hrnet", "simple_baseline"])
def tiny(request, tiny_model):
  """(arch, images, {N: (model, variables, jitted apply)}) for N = 1 and 3: conftest's tiny
  model with random variables (far from the reference init, whose MIMB gates are all ~0.5,
  so that lambda has a visible effect); one compile per model."""
  images = jax.random.normal(jax.random.key(3), (2, *TINY_HW, 3))
  nets = {}
  for n in (1, 3):
    model, v = tiny_model(request.param, n=n, image_hw=TINY_HW)
    apply = jax.jit(lambda v, x, lam, model=model: model.apply(v, x, lam, train=False))
    nets[n] = (model, v, apply)
  return request.param, images, nets


def test_shapes_and_lambda_effect(tiny):
  _, images, nets = tiny
  for n, (model, v, apply) in nets.items():
    assert model.lambda_dim == n and model.has_mimb == (n > 1)
    outs = [apply(v, images, encode_lambda(jnp.full((2,), k), model.lambda_dim))
            for k in range(model.lambda_dim)]
    assert outs[0].shape == (2, 16, 16, 17) and outs[0].dtype == jnp.float32
    scale = float(jnp.abs(outs[0]).mean())
    for out in outs[1:]:
      delta = float(jnp.abs(out - outs[0]).mean())
      assert delta > 0.05 * scale, (n, delta, scale)
    if n == 1:   # the baseline ignores lambda entirely: any code gives the same maps
      other = apply(v, images, jnp.array([[0.3], [-7.0]]))
      np.testing.assert_array_equal(np.asarray(other), np.asarray(outs[0]))


def test_shared_trunk_prediction_equals_full_network(tiny):
  _, images, nets = tiny
  model, v, apply = nets[3]
  heat = jax.jit(lambda v, x: model.apply(v, x, 3, method=model.predict_instances))(v, images)
  assert heat.shape == (2, 3, 16, 16, 17)
  for k in range(3):
    full = np.asarray(apply(v, images, encode_lambda(jnp.full((2,), k), 3)))
    # Equal up to float32 reordering: 1e-5 of the maps' scale (random weights make it ~50).
    np.testing.assert_allclose(np.asarray(heat[:, k]), full, rtol=1e-5,
                               atol=1e-5 * np.abs(full).max())


def test_train_mode_updates_batch_stats_and_bf16_keeps_fp32_state(tiny, tiny_model):
  arch, images, _ = tiny
  model, v = tiny_model(arch, n=2, image_hw=TINY_HW, dtype="bfloat16")
  abstract = abstract_variables(model, TINY_HW)     # what the initialiser creates
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(abstract))
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


def test_invalid_configs_are_rejected(tiny_model):
  model, v = tiny_model("hrnet", n=1, image_hw=TINY_HW)
  cfg = {"name": "hrnet", "width": 8}
  with pytest.raises(ValueError, match=r"num_instances \(N\) must be 1..4, got 5"):
    build_model(cfg, 5)
  with pytest.raises(ValueError, match=r"config.model.name must be one of \['hrnet', "
                     r"'simple_baseline', 'vitpose'\], got 'vit'"):
    build_model({"name": "vit"}, 1)
  with pytest.raises(ValueError, match=r"config.model.dtype must be one of \['bfloat16', "
                     r"'float32'\], got 'float16'"):
    build_model({**cfg, "dtype": "float16"}, 1)
  with pytest.raises(ValueError, match="mimb_slots needs 4 flags"):
    abstract_variables(build_model({**cfg, "mimb_slots": (True, True)}, 2), TINY_HW)
  with pytest.raises(ValueError, match="without MIMB"):
    jax.eval_shape(lambda v, x: model.apply(v, x, 2, method=model.predict_instances),
                   v, jnp.zeros((1, 64, 64, 3)))


def test_hrnet_rejects_input_not_divisible_by_32(tiny_model):
  model, _ = tiny_model("hrnet", n=1, image_hw=TINY_HW)
  with pytest.raises(ValueError, match="divisible by 32"):
    abstract_variables(model, (64, 48))
