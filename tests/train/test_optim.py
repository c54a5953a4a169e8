"""train/optim.py: the reference's MultiStepLR and Adam, and ViTPose's recipe: the official
LayerDecayOptimizerConstructor's lr scale and decay flag of every parameter of a tiny ViT (a
hand-written table), AdamW steps against torch's update formulas, mmcv's linear warm-up on
top of the step schedule, torch's clip_grad_norm_, and the optimiser each config builds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mipnet_jax import experiments
from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables
from mipnet_jax.train import optim

TINY_VIT = dict(name="vitpose", embed_dim=32, depth=4, num_heads=2, deconv_features=(16, 16),
                num_keypoints=17)
VIT_HW = (64, 48)


# --- learning rate -----------------------------------------------------------------------

def test_learning_rate_decays_at_the_epoch_boundaries():
  lr = optim.learning_rate(1e-3, steps_per_epoch=10, decay_epochs=(2, 4), decay_factor=0.1)
  got = [float(lr(s)) for s in (0, 19, 20, 21, 39, 40, 1000)]
  np.testing.assert_allclose(got, [1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5], rtol=1e-6)


def test_learning_rate_fractional_decay_epoch():
  lr = optim.learning_rate(0.5, steps_per_epoch=10, decay_epochs=(1.5,), decay_factor=0.5)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 14, 15, 16)], [0.5, 0.5, 0.25, 0.25])


def test_learning_rate_warmup_ramps_then_decays_at_the_same_epochs():
  lr = optim.learning_rate(1e-3, steps_per_epoch=10, decay_epochs=(3,), decay_factor=0.1,
                           warmup_epochs=1)
  ramp = [float(lr(s)) for s in (0, 1, 5, 9)]
  np.testing.assert_allclose(ramp, [0.0, 1e-4, 5e-4, 9e-4], rtol=1e-6, atol=1e-12)
  # After the warm-up the base rate holds until epoch 3 (step 30), as MultiStepLR's
  # milestones count epochs from the start of training, not from the end of the warm-up.
  after = [float(lr(s)) for s in (10, 29, 30, 39, 40)]
  np.testing.assert_allclose(after, [1e-3, 1e-3, 1e-4, 1e-4, 1e-4], rtol=1e-6)


def mmcv_lr(i: int, base: float, steps_per_epoch: int, decay_epochs, warmup_iters: int,
            ratio: float) -> float:
  """mmcv's StepLrUpdaterHook(by_epoch, warmup='linear') at iteration i, as mmcv computes
  it: the regular rate of the epoch, times 1 - k during the warm-up."""
  epoch = i // steps_per_epoch
  regular = base * 0.1 ** sum(epoch >= s for s in decay_epochs)
  if i >= warmup_iters:
    return regular
  k = (1 - i / warmup_iters) * (1 - ratio)
  return regular * (1 - k)


def test_mmcv_linear_warmup_on_the_step_schedule():
  # ViTPose: 5e-4, warm-up 500 iterations from 0.001 x lr, x0.1 at epochs 170 and 200.
  spe = 100
  lr = optim.learning_rate(5e-4, spe, (170, 200), 0.1, warmup_steps=500, warmup_ratio=0.001)
  by_hand = {0: 5e-7, 250: 5e-4 * 0.5005, 499: 5e-4 * (1 - 0.999 / 500), 500: 5e-4,
             16999: 5e-4, 17000: 5e-5, 19999: 5e-5, 20000: 5e-6, 20999: 5e-6}
  for step, want in by_hand.items():
    assert float(lr(step)) == pytest.approx(want, rel=1e-6), step
    assert want == pytest.approx(mmcv_lr(step, 5e-4, spe, (170, 200), 500, 0.001), rel=1e-12)
  # A warm-up across a decay epoch ramps the decayed rate (mmcv: the regular lr of the epoch).
  lr = optim.learning_rate(1.0, 2, (1,), 0.1, warmup_steps=4, warmup_ratio=0.5)
  got = [float(lr(s)) for s in range(6)]
  want = [mmcv_lr(s, 1.0, 2, (1,), 4, 0.5) for s in range(6)]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(want, [0.5, 0.625, 0.075, 0.0875, 0.1, 0.1], rtol=1e-12)


def test_two_warmups_are_refused():
  with pytest.raises(ValueError, match="warmup_epochs or warmup_steps, not both"):
    optim.learning_rate(1e-3, 10, (1,), 0.1, warmup_epochs=1, warmup_steps=5)


# --- the reference's Adam -----------------------------------------------------------------

def test_make_optimizer_rejects_other_names():
  with pytest.raises(ValueError, match=r"config.optim.name must be one of \('adam', 'adamw'\), "
                                       r"got 'sgd'"):
    optim.make_optimizer("sgd", optax.constant_schedule(0.1))


def test_make_optimizer_is_adam_or_adamw_with_weight_decay():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.5, -1.0])}
  schedule = optax.constant_schedule(0.1)
  for tx, want in ((optim.make_optimizer("adam", schedule), optax.adam(0.1)),
                   (optim.make_optimizer("adam", schedule, 0.01),
                    optax.adamw(0.1, weight_decay=0.01))):
    got, _ = tx.update(grads, tx.init(params), params)
    expected, _ = want.update(grads, want.init(params), params)
    np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-6)
  # Adam's first step is -lr * sign(g); AdamW also decays: -lr * (sign(g) + 0.01 w).
  got, _ = optim.make_optimizer("adam", schedule, 0.01).update(
      grads, optim.make_optimizer("adam", schedule, 0.01).init(params), params)
  np.testing.assert_allclose(got["w"], -0.1 * (np.sign([0.5, 0.5, -1.0]) +
                                               0.01 * np.array([1.0, -2.0, 3.0])), rtol=1e-4)


@pytest.mark.parametrize("arch", ["hrnet_w32", "sbl_r50"])
def test_hrnet_and_simple_baseline_configs_keep_plain_adam(arch):
  """The reference's recipe is untouched: optax.adam(1e-3) (same state layout, so old
  checkpoints restore), no clipping, no warm-up, x0.1 at the decay epochs."""
  config = experiments.experiment(arch, "coco", (256, 192))
  tx = optim.from_config(config, 10)
  params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
  grads = {"w": jnp.array([50.0, 0.5, -1.0]), "b": jnp.array([2.0])}
  want_tx = optax.adam(optax.piecewise_constant_schedule(1e-3, {1700: 0.1, 2000: 0.1}))
  state, want_state = tx.init(params), want_tx.init(params)
  assert jax.tree.structure(state) == jax.tree.structure(want_state)
  for _ in range(3):
    (got, state), (want, want_state) = (tx.update(grads, state, params),
                                        want_tx.update(grads, want_state, params))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)


# --- ViTPose: the constructor's per-parameter rules ----------------------------------------

def vit_table(depth: int, rate: float) -> dict[str, tuple[float, bool]]:
  """By hand, from the official constructor: (lr scale, weight decay) of each parameter of
  our ViTPose (N=1). Layer ids: pos_embed / patch_embed 0, block i -> i + 1, the rest
  depth + 1; scale rate^(depth + 1 - id); no decay for 1-D, .bias and pos_embed."""
  first = rate ** (depth + 1)
  table = {"backbone/pos_embed/embedding": (first, False),
           "backbone/patch_embed/kernel": (first, True),
           "backbone/patch_embed/bias": (first, False),
           "backbone/last_norm/scale": (1.0, False), "backbone/last_norm/bias": (1.0, False),
           "keypoint_head/final_layer/kernel": (1.0, True),
           "keypoint_head/final_layer/bias": (1.0, False)}
  for i in range(depth):
    scale = rate ** (depth - i)
    for norm in ("norm1", "norm2"):
      table.update({f"backbone/block{i}/{norm}/scale": (scale, False),
                    f"backbone/block{i}/{norm}/bias": (scale, False)})
    for fc in ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2"):
      table.update({f"backbone/block{i}/{fc}/kernel": (scale, True),
                    f"backbone/block{i}/{fc}/bias": (scale, False)})
  for j in range(2):   # deconvolutions (no bias) and their BatchNorms
    table.update({f"keypoint_head/deconv/deconv{j}/kernel": (1.0, True),
                  f"keypoint_head/deconv/bn{j}/scale": (1.0, False),
                  f"keypoint_head/deconv/bn{j}/bias": (1.0, False)})
  return table


def flat(tree) -> dict:
  return {"/".join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_lr_scale_and_decay_of_every_parameter_of_a_tiny_vit():
  params = abstract_variables(build_model(TINY_VIT, 1), VIT_HW)["params"]
  scales, mask = flat(optim.lr_scales(params, 4, 0.75)), flat(optim.decay_mask(params))
  table = vit_table(4, 0.75)
  assert set(scales) == set(table)
  for name, (scale, decays) in table.items():
    assert scales[name] == pytest.approx(scale, rel=1e-12), name
    assert mask[name] is decays, name
  assert table["backbone/patch_embed/kernel"][0] == pytest.approx(0.75 ** 5)
  assert table["backbone/block0/attn/qkv/kernel"][0] == pytest.approx(0.75 ** 4)
  assert table["backbone/block3/mlp/fc2/kernel"][0] == pytest.approx(0.75)


def test_mimbs_learn_at_the_full_rate_and_decay_their_kernels_only():
  params = abstract_variables(build_model(TINY_VIT, 2), VIT_HW)["params"]
  scales, mask = flat(optim.lr_scales(params, 4, 0.75)), flat(optim.decay_mask(params))
  mimb = {k: v for k, v in scales.items() if k.startswith("slot")}
  assert {k.split("/")[0] for k in mimb} == {"slot3_mimb", "slot4_mimb"}
  assert all(v == 1.0 for v in mimb.values())
  for name in mimb:
    assert mask[name] is name.endswith("kernel"), name
  # The shared parts keep the baseline's rules.
  for name, (scale, decays) in vit_table(4, 0.75).items():
    assert (scales[name], mask[name]) == (pytest.approx(scale), decays), name


def test_official_names_of_vit_b():
  """get_num_layer_for_vit on the official state_dict names of ViTPose-B (12 blocks, 0.75)."""
  for name, scale in (("backbone.pos_embed", 0.75 ** 13),
                      ("backbone.patch_embed.proj.weight", 0.75 ** 13),
                      ("backbone.blocks.0.attn.qkv.weight", 0.75 ** 12),
                      ("backbone.blocks.11.mlp.fc2.bias", 0.75),
                      ("backbone.last_norm.weight", 1.0),
                      ("keypoint_head.final_layer.weight", 1.0)):
    assert optim.layer_scale(name, 12, 0.75) == pytest.approx(scale, rel=1e-12), name
  assert optim.official_name(("backbone", "block11", "mlp", "fc2", "bias")) == (
      "backbone.blocks.11.mlp.fc2.bias")
  assert optim.official_name(("backbone", "pos_embed", "embedding")) == "backbone.pos_embed"


# --- ViTPose: AdamW, clipping -------------------------------------------------------------

def torch_adamw(p, grads, lrs, wd, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.AdamW's update (decoupled decay first), float64, one lr per step."""
  p, m, v = np.asarray(p, np.float64), 0.0, 0.0
  for t, (g, lr) in enumerate(zip(grads, lrs), 1):
    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps)
  return p


def test_adamw_steps_equal_torch_formulas_for_decayed_and_undecayed_parameters():
  # depth 2, rate 0.5: block 0 has id 1 of L = 4 -> scale 0.5^2.
  params = {"backbone": {"block0": {"mlp": {"fc1": {"kernel": jnp.array([[1.0, -2.0]]),
                                                    "bias": jnp.array([3.0])}}}}}
  grads = [{"backbone": {"block0": {"mlp": {"fc1": {"kernel": jnp.array([[0.3, -0.1]]),
                                                    "bias": jnp.array([g])}}}}}
           for g in (0.2, -0.4)]
  tx = optim.make_optimizer("adamw", optax.constant_schedule(0.1), 0.05, layer_decay=0.5,
                            depth=2)
  state, p = tx.init(params), params
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  fc1 = p["backbone"]["block0"]["mlp"]["fc1"]
  gk = [np.array([[0.3, -0.1]])] * 2
  np.testing.assert_allclose(fc1["kernel"], torch_adamw([[1.0, -2.0]], gk, [0.025] * 2, 0.05),
                             rtol=1e-6)
  np.testing.assert_allclose(fc1["bias"], torch_adamw([3.0], [0.2, -0.4], [0.025] * 2, 0.0),
                             rtol=1e-6)
  # One step by hand: Adam's first step is sign(g), so the kernel moves by
  # 0.025 * (sign(g) + 0.05 p) and the bias by 0.025 * sign(g) only (to float32's bias
  # correction: 1 - 0.999 in float32 is 1.3e-5 off, 6e-6 after the square root).
  first, _ = tx.update(grads[0], tx.init(params), params)
  first = first["backbone"]["block0"]["mlp"]["fc1"]
  np.testing.assert_allclose(first["kernel"], [[-0.025 * (1 + 0.05), -0.025 * (-1 - 0.1)]],
                             rtol=2e-5)
  np.testing.assert_allclose(first["bias"], [-0.025], rtol=2e-5)


def test_clip_grad_norm_scales_a_norm_10_gradient_to_1():
  grads = {"a": jnp.array([6.0, 0.0]), "b": {"c": jnp.array([[8.0]])}}   # norm 10
  clip = optim.clip_grad_norm(1.0)
  out, _ = clip.update(grads, clip.init(grads))
  assert float(optax.global_norm(out)) == pytest.approx(1.0, rel=1e-6)
  np.testing.assert_allclose(out["a"], [6.0 / (10 + 1e-6), 0.0], rtol=1e-7)
  small = jax.tree.map(lambda g: g / 20, grads)                           # norm 0.5: kept
  out, _ = clip.update(small, clip.init(small))
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(small)):
    np.testing.assert_array_equal(a, b)


def test_adamw_recipe_against_torch():
  """Three steps of clip + AdamW with per-group lr (scale x mmcv warm-up) and decay, as the
  official mmcv runner does them, against torch.optim.AdamW and clip_grad_norm_."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  params = {"backbone": {"patch_embed": {"kernel": rng.normal(size=(2, 2, 3, 4)),
                                         "bias": rng.normal(size=(4,))},
                         "block1": {"norm1": {"scale": rng.normal(size=(4,))}}},
            "keypoint_head": {"final_layer": {"kernel": rng.normal(size=(1, 1, 4, 3))}}}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 3, jnp.float32),
                        params) for _ in range(3)]
  # depth 2, rate 0.8: patch_embed id 0 -> 0.8^3, block1 id 2 -> 0.8, head 1.
  groups = {"backbone/patch_embed/kernel": (0.8 ** 3, 0.1),
            "backbone/patch_embed/bias": (0.8 ** 3, 0.0),
            "backbone/block1/norm1/scale": (0.8, 0.0),
            "keypoint_head/final_layer/kernel": (1.0, 0.1)}
  schedule = optim.learning_rate(1e-2, 100, (1,), 0.1, warmup_steps=2, warmup_ratio=0.1)
  tx = optim.make_optimizer("adamw", schedule, 0.1, grad_clip_norm=1.0, layer_decay=0.8,
                            depth=2)
  state, p = tx.init(params), params
  for g in grads:
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)

  tp = {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in flat(params).items()}
  for v in tp.values():
    v.requires_grad_(True)
  opt = torch.optim.AdamW([dict(params=[tp[k]], lr=s * 1e-2, weight_decay=wd)
                           for k, (s, wd) in groups.items()], betas=(0.9, 0.999))
  scales = [s for s, _ in groups.values()]
  for i, g in enumerate(grads):
    for k, v in flat(g).items():
      tp[k].grad = torch.tensor(np.asarray(v), dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_(list(tp.values()), max_norm=1.0)
    for group, s in zip(opt.param_groups, scales):
      group["lr"] = s * mmcv_lr(i, 1e-2, 100, (1,), 2, 0.1)
    opt.step()
  for k, v in flat(p).items():
    np.testing.assert_allclose(v, tp[k].detach().numpy(), rtol=2e-5, atol=1e-6, err_msg=k)


# --- the configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("arch,rate", [("vitpose_s", 0.9), ("vitpose_b", 0.75),
                                       ("vitpose_l", 0.8), ("vitpose_h", 0.85)])
def test_vitpose_presets_carry_the_official_recipe(arch, rate):
  c = experiments.experiment(arch, "coco", (256, 192))
  assert dict(c.optim) == dict(name="adamw", learning_rate=5e-4, betas=(0.9, 0.999),
                               weight_decay=0.1, layer_decay=rate, grad_clip_norm=1.0)
  assert (c.schedule.warmup_steps, c.schedule.warmup_ratio, c.schedule.warmup_epochs) == (
      500, 0.001, 0)
  assert (tuple(c.schedule.decay_epochs), c.schedule.total_epochs) == ((170, 200), 210)
  assert c.data.batch_size == 512          # 64 per GPU x 8 GPUs, global


def test_layer_decay_needs_a_vit():
  with pytest.raises(ValueError, match="config.optim.layer_decay needs a ViT"):
    optim.make_optimizer("adamw", optax.constant_schedule(0.1), 0.1, layer_decay=0.75)


def test_vitpose_config_builds_the_recipe_on_its_model():
  """vitpose_b's recipe on the quick widths (4 blocks): the first update of zero parameters
  under unit gradients is -lr(0) x scale (Adam's first step is sign(g), clipping keeps the sign, decay of 0 is 0),
  with lr(0) = 0.001 x 5e-4 (mmcv's warm-up) and the layer scale of each parameter."""
  c = experiments.experiment("vitpose_b", "coco", (256, 192))    # the official recipe ...
  c.model.update(experiments.QUICK_ARCHS["vitpose"])              # ... on 4 blocks
  # (the quick presets train from scratch: no layer decay, a 50-step warm-up)
  quick = experiments.experiment("vitpose_b", "coco", (256, 192), "quick")
  assert (quick.optim.layer_decay, quick.schedule.warmup_steps) == (1.0, 50)
  params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract_variables(
      build_model(c.model, c.num_instances), tuple(c.data.image_hw))["params"])
  tx = optim.from_config(c, 100)
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  got = flat(updates)
  for name, scale in (("backbone/patch_embed/kernel", 0.75 ** 5),
                      ("backbone/block0/attn/qkv/kernel", 0.75 ** 4),
                      ("backbone/block3/mlp/fc2/bias", 0.75),
                      ("keypoint_head/final_layer/kernel", 1.0),
                      ("slot3_mimb/branch0/excite_fc1/kernel", 1.0)):
    # rtol: Adam's eps (1e-8) against the clipped unit gradient (~1e-3) and float32.
    np.testing.assert_allclose(got[name], -5e-7 * scale, rtol=1e-4, err_msg=name)
