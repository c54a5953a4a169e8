"""The predict step: flip-back as the reference, flip test, device decoding."""

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax.core import codec
from mipnet_jax.eval import predict_step as inference
from mipnet_jax.core import meta
from mipnet_jax.data.image import normalize
from mipnet_jax.experiments import QUICK_ARCHS
from mipnet_jax.models import build_model, init_variables


def _reference_flip_back(output_nchw, flip_pairs):
  """HRNet's flip_back + SHIFT_HEATMAP on NCHW numpy."""
  out = output_nchw[:, :, :, ::-1].copy()
  for a, b in flip_pairs:
    tmp = out[:, a].copy()
    out[:, a] = out[:, b]
    out[:, b] = tmp
  out[:, :, :, 1:] = out.copy()[:, :, :, :-1]
  return out


def test_flip_back_equals_the_reference():
  x = np.random.default_rng(0).normal(size=(2, 17, 8, 6)).astype(np.float32)
  want = _reference_flip_back(x, meta.COCO.flip_pairs)
  got = inference.flip_back(jnp.asarray(x.transpose(0, 2, 3, 1)), meta.COCO.flip_permutation)
  np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), want)


def _tiny_model(n):
  cfg = dict(name="hrnet", width=32, num_keypoints=17, mimb_slots=(False, False, True, True),
             mimb_reduce=4, mimb_only_embed=False, lambda_code="one_hot", dtype="float32")
  cfg.update(QUICK_ARCHS["hrnet"])
  model = build_model(cfg, n)
  return model, init_variables(model, (64, 32), jax.random.key(0))


def test_flip_test_averages_with_the_flipped_pass_and_decodes_on_device():
  model, variables = _tiny_model(2)
  images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (3, 64, 32, 3), np.uint8))
  perm = meta.COCO.flip_permutation
  plain = model.apply(variables, normalize(images), 2, method=model.predict_instances)
  mirrored = model.apply(variables, normalize(images[:, :, ::-1]), 2,
                         method=model.predict_instances)
  want = (plain + inference.flip_back(mirrored, perm)) * 0.5
  got = inference.predict_heatmaps(model, variables, images, 2, perm)
  assert got.shape == (3, 2, 16, 8, 17)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  out = inference.make_predict_fn(model, 2, perm, "quarter")(variables, images)
  coords, maxvals = codec.decode_heatmaps(np.asarray(got))
  np.testing.assert_allclose(np.asarray(out["coords"]), coords, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out["maxvals"]), maxvals, rtol=1e-5, atol=1e-6)
  raw = inference.make_predict_fn(model, 2, None, "dark")(variables, images)
  c, m = inference.decode_on_host(raw, "dark")
  assert c.shape == (3, 2, 17, 2) and m.shape == (3, 2, 17)
