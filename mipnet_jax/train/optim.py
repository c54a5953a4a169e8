"""Optimisers and learning-rate schedules: the reference's Adam and MultiStepLR, and ViTPose's
recipe (ViTAE-Transformer/ViTPose ``configs/.../ViTPose_*_coco_256x192.py``).

ViTPose trains with mmcv's AdamW built by ``LayerDecayOptimizerConstructor``
(``mmcv_custom/layer_decay_optimizer_constructor.py``), which decides per parameter, from its
official torch name (``models/torch_names.torch_key`` of our flax path):
  * weight decay: none for 1-D parameters (LayerNorm, BatchNorm, biases), names ending in
    ``.bias`` and names containing ``pos_embed``; ``weight_decay`` for the rest;
  * lr scale: ``rate ** (L - id - 1)`` with L = num_layers + 2 and ``id`` from
    ``get_num_layer_for_vit``: 0 for ``backbone.pos_embed`` / ``backbone.patch_embed.*``,
    i + 1 for ``backbone.blocks.{i}.*``, L - 1 (scale 1) for everything else (last_norm,
    the head, our MIMBs). E.g. depth 12, rate 0.75: patch embedding 0.75^13, block 0
    0.75^12, block 11 0.75, head 1.
mmcv scales both the step and the decoupled decay by the group's lr (lr_scale x schedule),
as here. ``optimizer_config.grad_clip(max_norm=1)`` is torch's ``clip_grad_norm_`` on the
raw gradients, and ``lr_config`` is the step policy by epoch with a linear warm-up over
iterations from ``warmup_ratio`` x the (step-decayed) rate (mmcv ``LrUpdaterHook``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mipnet_jax.models.torch_names import torch_key

OPTIMIZERS = ("adam", "adamw")


# --- the official per-parameter rules -------------------------------------------------------

def official_name(path: tuple[str, ...]) -> str:
  """The official torch name of our parameter ``path`` ('backbone', 'block0', 'attn', 'qkv',
  'kernel') -> 'backbone.blocks.0.attn.qkv.weight'; a path without a torch rule (a test
  network) keeps its flax names, joined with dots."""
  try:
    return torch_key("params", tuple(path))[0]
  except KeyError:
    return ".".join(path)


def vit_layer_id(name: str, num_layers: int) -> int:
  """``get_num_layer_for_vit``: the layer of an official ViTPose parameter name, with
  ``num_layers`` = the config's num_layers + 2."""
  if name in ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed"):
    return 0
  if name.startswith("backbone.patch_embed"):
    return 0
  if name.startswith("backbone.blocks"):
    return int(name.split(".")[2]) + 1
  return num_layers - 1


def layer_scale(name: str, depth: int, rate: float) -> float:
  """The constructor's lr scale of parameter ``name`` for a ViT of ``depth`` blocks
  (paramwise_cfg.num_layers) at ``layer_decay_rate`` ``rate``."""
  total = depth + 2
  return rate ** (total - vit_layer_id(name, total) - 1)


def decays(name: str, ndim: int) -> bool:
  """Whether the constructor gives parameter ``name`` (of ``ndim`` dims) weight decay."""
  return not (ndim == 1 or name.endswith(".bias") or "pos_embed" in name)


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def lr_scales(params, depth: int, rate: float):
  """The tree of ``params`` with each leaf's lr scale (python floats)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: layer_scale(official_name(_names(p)), depth, rate), params)


def decay_mask(params):
  """The tree of ``params`` with True where the parameter gets weight decay."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: decays(official_name(_names(p)), jnp.ndim(x)), params)


# --- transformations ------------------------------------------------------------------------

def scale_by_layer(depth: int, rate: float) -> optax.GradientTransformation:
  """Multiplies each update by its parameter's layer-wise lr scale (stateless)."""
  def update(updates, state, params=None):
    del params
    scales = lr_scales(updates, depth, rate)
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clip_grad_norm(max_norm: float) -> optax.GradientTransformation:
  """torch's ``clip_grad_norm_`` (norm 2): gradients x min(1, max_norm / (norm + 1e-6))."""
  def update(updates, state, params=None):
    del params
    norm = optax.tree.norm(updates)
    coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(name: str, schedule: optax.Schedule, weight_decay: float = 0.0, *,
                   betas: tuple[float, float] = (0.9, 0.999), grad_clip_norm: float = 0.0,
                   layer_decay: float = 1.0, depth: int = 0) -> optax.GradientTransformation:
  """The optimiser of ``config.optim``.

  name "adam": the reference's torch.optim.Adam, or optax AdamW decaying every parameter
    when ``weight_decay`` > 0; "adamw": AdamW with the official decay mask (module
    docstring). ``grad_clip_norm`` > 0 clips the global gradient norm first (torch's
    formula); ``layer_decay`` < 1 scales each parameter's rate by its ViT layer (``depth``:
    the ViT's blocks). With neither, the optimiser (and its state) is plain optax.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {name!r}")
  b1, b2 = betas
  if name == "adamw":
    tx = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)
  elif weight_decay:
    tx = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
  else:
    tx = optax.adam(schedule, b1=b1, b2=b2)
  if layer_decay != 1.0:
    if depth <= 0:
      raise ValueError("config.optim.layer_decay needs a ViT (config.model.depth blocks); "
                       "set it to 1.0 for this model")
    tx = optax.chain(tx, scale_by_layer(depth, layer_decay))
  if grad_clip_norm > 0:
    tx = optax.chain(clip_grad_norm(grad_clip_norm), tx)
  return tx


# --- schedules ------------------------------------------------------------------------------

def learning_rate(base: float, steps_per_epoch: int, decay_epochs, decay_factor: float,
                  warmup_epochs: float = 0.0, warmup_steps: int = 0,
                  warmup_ratio: float = 0.001) -> optax.Schedule:
  """The reference's MultiStepLR (x decay_factor at each epoch of ``decay_epochs``), by step,
  optionally after a linear warm-up from 0 over ``warmup_epochs``, or with mmcv's linear
  warm-up over ``warmup_steps`` iterations from ``warmup_ratio`` x the rate."""
  if warmup_epochs and warmup_steps:
    raise ValueError("config.schedule: set warmup_epochs or warmup_steps, not both")
  boundaries = {int(round(e * steps_per_epoch)): decay_factor for e in decay_epochs}
  steps = optax.piecewise_constant_schedule(base, boundaries)
  if warmup_steps > 0:
    return mmcv_linear_warmup(steps, warmup_steps, warmup_ratio)
  warmup = int(round(warmup_epochs * steps_per_epoch))
  if warmup <= 0:
    return steps
  # join_schedules hands the second schedule the steps since the warm-up ended; the decay
  # epochs count from the start of training (MultiStepLR's milestones), so shift back.
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup),
                               lambda step: steps(step + warmup)], [warmup])


def mmcv_linear_warmup(schedule: optax.Schedule, warmup_steps: int,
                       ratio: float) -> optax.Schedule:
  """mmcv's ``warmup='linear'``: at iteration i < warmup_steps the regular rate times
  1 - (1 - i / warmup_steps) (1 - ratio); the regular rate from then on."""
  def lr(count):
    k = (1.0 - count / warmup_steps) * (1.0 - ratio)
    return schedule(count) * jnp.where(count < warmup_steps, 1.0 - k, 1.0)

  return lr


def from_config(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimiser and schedule of ``config.optim`` / ``config.schedule`` at
  ``steps_per_epoch`` (the layer-wise decay counts ``config.model.depth`` blocks)."""
  o, s = config.optim, config.schedule
  schedule = learning_rate(o.learning_rate, steps_per_epoch, s.decay_epochs, s.decay_factor,
                           s.warmup_epochs, s.warmup_steps, s.warmup_ratio)
  depth = config.model.depth if config.model.name == "vitpose" else 0
  return make_optimizer(o.name, schedule, o.weight_decay, betas=tuple(o.betas),
                        grad_clip_norm=o.grad_clip_norm, layer_decay=o.layer_decay, depth=depth)
