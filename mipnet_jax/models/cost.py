"""Multiply-add counts read off a function's jaxpr, in two conventions.

``macs``: true multiply-adds of every convolution and matmul, as PyTorch FLOP counters
count them: output elements x kernel taps x input channels per group. Our transposed
convolutions are sub-pixel convolutions (layers.ConvTranspose4x4), so they are charged their
true multiply-adds, not the zeros of a dilated input; an XLA transposed convolution
(``lhs_dilation`` > 1) found in a jaxpr is charged the same way.

``paper``: the HRNet repository's ``get_model_summary`` convention behind the MIPNet
supplementary's GFLOPs (Table 2): identical for convolutions and Linear layers, but a
transposed convolution is charged weight elements x *output* area, which is stride^2 times
its true multiply-adds. Report it divided by 2^30 (``PAPER_UNIT``).

Element-wise work, pooling, BatchNorm and upsampling are not counted, as in both references.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core

from mipnet_jax.models.layers import TRANSPOSED_CONV_SCOPE

PAPER_UNIT = 2 ** 30
TRANSPOSED_CONV_STRIDE = 2


@dataclasses.dataclass
class Cost:
  macs: float = 0.0    # true multiply-adds
  paper: float = 0.0   # HRNet-counter multiply-adds (divide by PAPER_UNIT for "GFLOPs")


def _conv_macs(eqn) -> float:
  out_shape = eqn.outvars[0].aval.shape
  rhs_shape = eqn.invars[1].aval.shape
  rhs_spec = eqn.params["dimension_numbers"].rhs_spec
  taps_x_cin = math.prod(rhs_shape) // rhs_shape[rhs_spec[0]]
  macs = math.prod(out_shape) * taps_x_cin
  dilation = eqn.params.get("lhs_dilation") or ()
  return macs / math.prod(dilation) if dilation else macs


def _dot_macs(eqn) -> float:
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  lhs_shape = eqn.invars[0].aval.shape
  return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs_shape[d] for d in lhs_contract)


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jex_core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jex_core.Jaxpr):
        yield v


def _walk(jaxpr, in_transposed: bool, cost: Cost) -> None:
  for eqn in jaxpr.eqns:
    transposed = in_transposed or TRANSPOSED_CONV_SCOPE in str(eqn.source_info.name_stack)
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      macs = _conv_macs(eqn)
      dilated = any(d > 1 for d in (eqn.params.get("lhs_dilation") or ()))
      factor = TRANSPOSED_CONV_STRIDE ** 2 if (transposed or dilated) else 1
      cost.macs += macs
      cost.paper += macs * factor
    elif name == "dot_general":
      macs = _dot_macs(eqn)
      cost.macs += macs
      cost.paper += macs
    if name == "cond":   # e.g. platform_dependent's per-backend kernels: the costliest branch
      branches = [Cost() for _ in eqn.params["branches"]]
      for branch, sub in zip(branches, eqn.params["branches"]):
        _walk(sub.jaxpr, transposed, branch)
      cost.macs += max(b.macs for b in branches)
      cost.paper += max(b.paper for b in branches)
      continue
    for sub in _sub_jaxprs(eqn):
      _walk(sub, transposed, cost)


def count_cost(fn: Callable[..., Any], *args: Any) -> Cost:
  """Counts the multiply-adds of ``fn(*args)``; args may be arrays or ShapeDtypeStructs."""
  cost = Cost()
  _walk(jax.make_jaxpr(fn)(*args).jaxpr, False, cost)
  return cost


def xla_flops(fn: Callable[..., Any], *args: Any) -> float:
  """XLA's own cost analysis of ``fn(*args)`` (flops = 2 x MACs; skips zero-padded taps)."""
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])
