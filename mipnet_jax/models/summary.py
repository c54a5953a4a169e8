"""Model summary (``--mode=summary``): parameter counts and the per-box cost of inference
for N = 1..4.

The cost is that of ``predict_instances`` (trunk once, lambda head N times) at batch 1,
counted from its jaxpr (models/cost.py), in true multiply-adds and in the paper's GFLOPs
convention, with XLA's own cost analysis beside them. N=1 is the baseline network (no MIMB);
N >= 2 is MIPNet with a lambda code of width N.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from mipnet_jax.models.build import build_model
from mipnet_jax.models.variables import abstract_variables
from mipnet_jax.models.cost import PAPER_UNIT, count_cost, xla_flops

INSTANCE_COUNTS = (1, 2, 3, 4)
_MIMB_SUFFIX = "_mimb"


def count_params(tree: Any) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def mimb_param_count(params: Mapping[str, Any]) -> int:
  """Parameters of every MIMB group (top-level modules named ``*_mimb``)."""
  return sum(count_params(v) for k, v in params.items() if k.endswith(_MIMB_SUFFIX))


def instance_cost(model_cfg: Mapping[str, Any], image_hw: tuple[int, int], n: int,
                  with_xla: bool = True) -> dict:
  """Per-box cost of ``predict_instances`` for N=n: true MACs, paper GFLOPs and (lowering
  the function, unless ``with_xla`` is False) XLA's flops."""
  model = build_model(model_cfg, n)
  variables = abstract_variables(model, image_hw)
  image = jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32)

  def predict(variables, images):
    return model.apply(variables, images, n, method=model.predict_instances)

  cost = count_cost(predict, variables, image)
  out = {"macs": cost.macs, "paper_gflops": cost.paper / PAPER_UNIT}
  if with_xla:
    out["xla_flops"] = xla_flops(predict, variables, image)
  return out


def model_report(config: ml_collections.ConfigDict) -> dict:
  """The report of ``config``'s model, as the JSON line of ``--mode=summary --json``."""
  image_hw = tuple(config.data.image_hw)
  model = build_model(config.model, config.num_instances)
  params = abstract_variables(model, image_hw)["params"]
  costs = {n: instance_cost(config.model, image_hw, n) for n in INSTANCE_COUNTS}
  return {
      "config": config.experiment,
      "num_instances": config.num_instances,
      "params": count_params(params),
      "mimb_params": mimb_param_count(params),
      "macs": {str(n): c["macs"] for n, c in costs.items()},
      "paper_gflops": {str(n): c["paper_gflops"] for n, c in costs.items()},
      "xla_flops": {str(n): c["xla_flops"] for n, c in costs.items()},
  }


def format_report(report: dict) -> str:
  """A human-readable table of ``model_report``'s output."""
  lines = [
      f"{report['config']}  (N={report['num_instances']})",
      f"  parameters: {report['params']:,} (MIMB: {report['mimb_params']:,})",
      "  per-box inference cost (trunk once + N x lambda head):",
      "    N   true GMACs   paper GFLOPs (MACs/2^30, deconv x4)   XLA GFLOP (2 x MAC)",
  ]
  for n in map(str, INSTANCE_COUNTS):
    lines.append(f"    {n}   {report['macs'][n] / 1e9:10.3f}   {report['paper_gflops'][n]:12.2f}"
                 f"{'':25s}{report['xla_flops'][n] / 1e9:10.3f}")
  return "\n".join(lines)
