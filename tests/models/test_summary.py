"""The model summary (``--mode=summary``) of a quick config: parameter counts against the MIMB
formula, per-box costs that grow as one trunk plus N heads, XLA's flops beside the counted
MACs, and the printed table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from mipnet_jax import experiments
from mipnet_jax.models import summary
from mipnet_jax.models.build import build_model
from mipnet_jax.models.cost import PAPER_UNIT, count_cost
from mipnet_jax.models.variables import abstract_variables


@pytest.fixture(scope="module")
def report():
  c = experiments.experiment("sbl_r50", "synthetic", (256, 192), "quick")
  c.data.image_hw = (64, 48)
  return c, summary.model_report(c)


def _mimb_params(channels: int, lambda_width: int, reduce: int) -> int:
  """Listing 1: F_ex 2 C C/r (no biases); F_em (L + 1) C/r, BN1d 2 C/r, (C/r + 1) C."""
  hidden = channels // reduce
  return 2 * channels * hidden + (lambda_width + 1) * hidden + 2 * hidden + (hidden + 1) * channels


def test_parameter_counts(report):
  c, r = report
  assert (r["config"], r["num_instances"]) == ("sbl_r50_synthetic_256x192_quick", 2)
  # Quick SimpleBaseline: bottleneck outputs 4 x 8 x 2^i = 32, 64, 128, 256 channels; the
  # MIMBs of slots 3 and 4 modulate the inputs of layer3 and layer4 (64 and 128 channels),
  # r = 1, one-hot lambda of width N = 2.
  assert c.model.mimb_reduce == 1 and tuple(c.model.mimb_slots) == (False, False, True, True)
  assert r["mimb_params"] == _mimb_params(64, 2, 1) + _mimb_params(128, 2, 1) == 62_592
  baseline = abstract_variables(build_model(c.model, 1), (64, 48))["params"]
  assert r["params"] == summary.count_params(baseline) + r["mimb_params"]
  assert summary.mimb_param_count(baseline) == 0


def test_costs_are_one_trunk_plus_n_heads(report):
  c, r = report
  macs = {int(n): m for n, m in r["macs"].items()}
  assert sorted(macs) == [1, 2, 3, 4]
  # Each further instance adds one head (layer3 + layer4 + deconv head with their MIMBs). The
  # MIMBs' first Linear takes the one-hot code of width N for each of the N instances: N^2
  # hidden-unit MACs, whose second difference is 2 x the hidden units (64 + 128).
  step3, step4 = macs[3] - macs[2], macs[4] - macs[3]
  assert step3 > 0 and step4 - step3 == 2 * (64 + 128)
  assert macs[2] - macs[1] > step3 * 0.99           # N=1 has no MIMB at all
  model = build_model(c.model, 3)
  variables = abstract_variables(model, (64, 48))
  cost = count_cost(lambda v, x: model.apply(v, x, 3, method=model.predict_instances),
                    variables, jax.ShapeDtypeStruct((1, 64, 48, 3), jnp.float32))
  assert macs[3] == cost.macs and r["paper_gflops"]["3"] == cost.paper / PAPER_UNIT
  # XLA's own analysis (2 flops per multiply-add in its convolution form) tells the same
  # story: equal steps per further head, within 20% of 2 x the counted MACs.
  xla = {int(n): f for n, f in r["xla_flops"].items()}
  assert xla[4] - xla[3] == pytest.approx(xla[3] - xla[2], rel=0.01)
  for n in range(1, 5):
    assert xla[n] == pytest.approx(2 * macs[n], rel=0.2), n


def test_format_report(report):
  _, r = report
  lines = summary.format_report(r).splitlines()
  assert lines[0] == "sbl_r50_synthetic_256x192_quick  (N=2)"
  assert lines[1] == f"  parameters: {r['params']:,} (MIMB: {r['mimb_params']:,})"
  assert len(lines) == 4 + 4
  for n, line in zip("1234", lines[4:]):
    fields = line.split()
    assert fields[0] == n
    assert float(fields[1]) == pytest.approx(r["macs"][n] / 1e9, abs=5e-4)
    assert float(fields[2]) == pytest.approx(r["paper_gflops"][n], abs=5e-3)
    assert float(fields[3]) == pytest.approx(r["xla_flops"][n] / 1e9, abs=5e-4)
