"""The networks written as ONNX nodes (serve/onnx_models.py) against the flax models: the MIMB
variants (only-embed ablation, the authors' binary lambda code at N = 3) give
``predict_instances``'s heatmaps within 1e-4 of their std at batch 1 and 3, and the export
refuses what it cannot write. HRNet and SimpleBaseline at N = 1 and 2 are compared through
the serving graph (test_onnx_export.py). The weights are ``conditioned_variables``."""

import jax
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
import onnxruntime  # noqa: E402

from conftest import conditioned_variables  # noqa: E402
from mipnet_jax.serve import onnx_export  # noqa: E402

HW = (64, 64)
BASELINE = (False, False, False, False)


def run_network(model, variables, n, images):
  proto = onnx_export.network_model(model, variables, n, HW)
  session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  return [session.run(None, {"images": images[:b].transpose(0, 3, 1, 2)})[0]
          for b in (1, 3)]


def setup(tiny_model, arch, n, seed, **fields):
  """(model, conditioned variables, images [3, H, W, 3])."""
  model, variables = tiny_model(arch, n=n, image_hw=HW, **fields)
  images = np.random.default_rng(seed).normal(size=(3, *HW, 3)).astype(np.float32)
  return model, conditioned_variables(model, variables, images, n), images


def jax_heatmaps(model, variables, n, images):
  fn = jax.jit(lambda v, x: model.apply(v, x, n, method=model.predict_instances))
  return np.asarray(fn(variables, images)).transpose(0, 1, 4, 2, 3)   # [B, N, K, h, w]


@pytest.mark.parametrize("fields", [dict(mimb_only_embed=True),
                                    dict(n=3, lambda_code="binary", lambda_dim=2),
                                    dict(num_blocks=((1, 2), (1, 1, 3), (2, 1, 1, 1)),
                                         branch_channels=(8, 12, 20, 24))],
                         ids=["only_embed", "binary_n3", "hrnet_per_branch_blocks"])
def test_mimb_variants(tiny_model, fields):
  fields = dict(fields)
  n = fields.pop("n", 2)
  model, variables, images = setup(tiny_model, "hrnet", n, 2, **fields)
  want = jax_heatmaps(model, variables, n, images)
  for got in run_network(model, variables, n, images):
    np.testing.assert_allclose(got, want[:len(got)], rtol=0, atol=1e-4 * want.std())


def test_refuses_what_it_cannot_write(tiny_model):
  model, variables = tiny_model("hrnet", n=1, image_hw=HW, mimb_slots=BASELINE)
  with pytest.raises(ValueError, match="a model without MIMB predicts one instance, asked "
                                       "for 2"):
    onnx_export.network_model(model, variables, 2, HW)
  with pytest.raises(ValueError, match=r"HRNet needs an input \(h, w\) divisible by 32"):
    onnx_export.network_model(model, variables, 1, (64, 48))
  broken = dict(variables, params={k: v for k, v in variables["params"].items()
                                   if k != "transition2"})
  with pytest.raises(Exception, match="transition2"):     # flax names the missing module
    onnx_export.network_model(model, broken, 1, HW)
