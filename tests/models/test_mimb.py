"""MIMB (supplementary Listing 1) against a numpy transcription of the listing; parameter
counts; lambda codes; the injected Linear initialisers and which backbone uses which."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.models import mimb
from mipnet_jax.models.mimb import MIMB, encode_lambda, lambda_width


def _sigmoid(v):
  return 1 / (1 + np.exp(-v))


def _randomize(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_mimb_matches_listing_in_eval_mode():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)
  lam = np.asarray(encode_lambda(jnp.array([0, 1, 1]), 2))
  mod = MIMB(reduce=4)
  v = mod.init(jax.random.key(0), x, lam, train=False)
  params = _randomize(v["params"], 1)
  stats = {"embed_bn": {"mean": jnp.array([0.3, -0.2]), "var": jnp.array([2.0, 0.5])}}
  out = mod.apply({"params": params, "batch_stats": stats}, x, lam, train=False)
  p = jax.tree.map(np.asarray, params)
  y = x.mean(axis=(1, 2))
  y = _sigmoid(np.maximum(y @ p["excite_fc1"]["kernel"], 0) @ p["excite_fc2"]["kernel"])
  z = lam @ p["embed_fc1"]["kernel"] + p["embed_fc1"]["bias"]
  bn = p["embed_bn"]
  z = (z - np.array([0.3, -0.2])) / np.sqrt(np.array([2.0, 0.5]) + 1e-5) * bn["scale"] + bn["bias"]
  z = _sigmoid(np.maximum(z, 0) @ p["embed_fc2"]["kernel"] + p["embed_fc2"]["bias"])
  expected = x * y[:, None, None, :] * z[:, None, None, :]
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduce,only_embed,expected", [
    # C=32, lambda width 2. F_ex: 2*C*C/r. F_em: (2+1)*C/r + 2*C/r (BN) + (C/r+1)*C.
    (4, False, 2 * 32 * 8 + 3 * 8 + 2 * 8 + 9 * 32),
    (2, False, 2 * 32 * 16 + 3 * 16 + 2 * 16 + 17 * 32),
    (1, False, 2 * 32 * 32 + 3 * 32 + 2 * 32 + 33 * 32),
    (4, True, 3 * 8 + 2 * 8 + 9 * 32),
])
def test_mimb_parameter_count(reduce, only_embed, expected):
  x = jnp.zeros((1, 2, 2, 32))
  v = jax.eval_shape(lambda: MIMB(reduce=reduce, only_embed=only_embed).init(
      jax.random.key(0), x, jnp.zeros((1, 2)), train=False))
  assert sum(np.prod(a.shape) for a in jax.tree.leaves(v["params"])) == expected


def test_mimb_reference_init_halves_the_gates():
  # Authors' HRNet init: N(0, 0.001) weights, zero biases -> y, z ~ 0.5, out ~ x / 4.
  x = jnp.ones((2, 3, 3, 16))
  lam = encode_lambda(jnp.array([0, 1]), 2)
  mod = MIMB()
  out = mod.apply(mod.init(jax.random.key(0), x, lam, train=False), x, lam, train=False)
  np.testing.assert_allclose(np.asarray(out), 0.25, atol=1e-3)


def test_lambda_codes():
  np.testing.assert_array_equal(encode_lambda(jnp.arange(3), 3), np.eye(3))
  # The authors' N=3/4 code: 0 -> [0,0], 1 -> [1,0], 2 -> [0,1], 3 -> [1,1].
  np.testing.assert_array_equal(encode_lambda(jnp.arange(4), 2, "binary"),
                                [[0, 0], [1, 0], [0, 1], [1, 1]])
  assert lambda_width(2) == 2 and lambda_width(4) == 4
  assert lambda_width(3, "binary") == 2 and lambda_width(4, "binary") == 2
  with pytest.raises(ValueError, match="lambda code"):
    lambda_width(2, "gray")


# --- the injected Linear initialisers --------------------------------------------------------

def _draw(linear_init, fan_in: int, out: int, seed: int = 0):
  kinit, binit = linear_init(fan_in)
  k1, k2 = jax.random.split(jax.random.key(seed))
  return (np.asarray(kinit(k1, (fan_in, out), jnp.float32)),
          np.asarray(binit(k2, (out,), jnp.float32)))


def test_normal_linear_init_draws_n0_0001_and_zero_biases():
  for fan_in in (2, 256):                               # the fan-in does not matter
    w, b = _draw(mimb.normal_linear_init, fan_in, 4096 // fan_in * 16)
    assert w.std() == pytest.approx(0.001, rel=0.03) and abs(w.mean()) < 1e-4
    assert np.abs(w).max() < 0.006                      # a normal, not a uniform, of sd 0.001
    np.testing.assert_array_equal(b, 0.0)


@pytest.mark.parametrize("fan_in", [2, 64, 1024])
def test_torch_linear_init_is_uniform_within_one_over_sqrt_fan_in(fan_in):
  bound = 1 / np.sqrt(fan_in)
  w, b = _draw(mimb.torch_linear_init, fan_in, max(16, 65536 // fan_in))
  _, b_many = _draw(mimb.torch_linear_init, fan_in, 4096, seed=1)
  for values in (w, b_many):
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.99 * bound          # the spread reaches the bound
    assert values.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)   # U(-a, a): a / sqrt 3
  assert np.abs(b).max() <= bound and b.std() > 0


def _initialised_mimb(model, channels=(64, 128)):
  """The real initialiser of the model's first MIMB group (only that group is created:
  its parameters, fed feature maps of ``channels``)."""
  k = model.split
  xs = tuple(jnp.zeros((2, 4, 4, c)) for c in channels)
  lam = encode_lambda(jnp.array([0, 1]), model.lambda_dim)
  params = model.init(jax.random.key(0), xs, lam,
                      method=lambda m, xs, lam: m._mimb(k)(xs, lam, train=False))["params"]
  (name, group), = params.items()
  assert name == f"{model.MIMB_PREFIX}{k + 1}_mimb"
  return group


def test_hrnet_mimbs_use_the_normal_init_and_simple_baseline_the_torch_init(tiny_model):
  hrnet, _ = tiny_model("hrnet", image_hw=(64, 64))
  for branch in _initialised_mimb(hrnet).values():
    for name, layer in branch.items():
      if name == "embed_bn":
        continue
      w = np.asarray(layer["kernel"])
      assert w.std() == pytest.approx(0.001, rel=0.2), name
      if "bias" in layer:
        np.testing.assert_array_equal(layer["bias"], 0.0)
  sbl, _ = tiny_model("simple_baseline")
  for branch in _initialised_mimb(sbl, channels=(128,)).values():
    for name, layer in branch.items():
      if name == "embed_bn":
        continue
      w = np.asarray(layer["kernel"])
      bound = 1 / np.sqrt(w.shape[0])                   # fan_in = the Dense's input width
      assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound, name
      assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.2), name
      if "bias" in layer:
        b = np.asarray(layer["bias"])
        assert np.abs(b).max() <= bound and b.std() > 0.1 * bound, name
