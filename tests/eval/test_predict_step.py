"""The predict step: flip-back as the reference, flip test, device and host (DARK) decoding,
and the image-coordinates function that export serializes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mipnet_jax.core import codec, meta
from mipnet_jax.core.normalize import normalize
from mipnet_jax.eval import predict_step


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
  got = predict_step.flip_back(jnp.asarray(x.transpose(0, 2, 3, 1)), meta.COCO.flip_permutation)
  np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), want)


def test_flip_test_averages_with_the_flipped_pass_and_decodes_on_device(tiny_model):
  model, variables = tiny_model(n=2, image_hw=(64, 32))
  images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (3, 64, 32, 3), np.uint8))
  perm = meta.COCO.flip_permutation
  plain = model.apply(variables, normalize(images), 2, method=model.predict_instances)
  mirrored = model.apply(variables, normalize(images[:, :, ::-1]), 2,
                         method=model.predict_instances)
  want = (plain + predict_step.flip_back(mirrored, perm)) * 0.5
  got = predict_step.predict_heatmaps(model, variables, images, 2, perm)
  assert got.shape == (3, 2, 16, 8, 17)
  # Random weights give heatmaps of magnitude ~100: float32 rounding of the two orders of the
  # same sums, relative to that scale.
  scale = float(np.abs(np.asarray(want)).max())
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6 * scale)
  out = predict_step.make_predict_fn(model, 2, perm, "quarter")(variables, images)
  coords, maxvals = codec.decode_heatmaps(np.asarray(got))
  np.testing.assert_allclose(np.asarray(out["coords"]), coords, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out["maxvals"]), maxvals, rtol=0, atol=1e-6 * scale)
  host = predict_step.decode_on_host(out)              # device-decoded: passed through
  np.testing.assert_array_equal(host[0], np.asarray(out["coords"]))
  np.testing.assert_array_equal(host[1], np.asarray(out["maxvals"]))
  # DARK: the heatmaps come back (unflipped here) and are decoded on the host.
  raw = predict_step.make_predict_fn(model, 2, None, "dark")(variables, images)
  assert set(raw) == {"heatmaps"}
  np.testing.assert_array_equal(np.asarray(raw["heatmaps"]), np.asarray(jax.jit(
      lambda v, x: predict_step.predict_heatmaps(model, v, x, 2, None))(variables, images)))
  c, m = predict_step.decode_on_host(raw)
  want_c, want_m = codec.decode_dark(np.asarray(raw["heatmaps"]))
  assert c.shape == (3, 2, 17, 2) and m.shape == (3, 2, 17)
  np.testing.assert_array_equal(c, want_c)
  np.testing.assert_array_equal(m, want_m)


def test_unknown_decode_is_refused(tiny_model):
  model, _ = tiny_model(n=2, image_hw=(64, 32))
  with pytest.raises(ValueError, match="decode must be 'quarter' or 'dark', got 'argmax'"):
    predict_step.make_predict_fn(model, 2, None, "argmax")


def test_image_joints_fn_is_the_predict_step_then_the_inverse_affine(tiny_model):
  """The function export serializes: quarter decoding, then ``heatmap_to_image`` in float32
  on the device; the host's float64 inverse affine agrees within 1e-3 px."""
  model, variables = tiny_model(n=2, image_hw=(64, 32))
  rng = np.random.default_rng(2)
  crops = rng.integers(0, 256, (3, 64, 32, 3), np.uint8)
  centers = rng.uniform(50, 300, (3, 2)).astype(np.float32)
  scales = rng.uniform(0.3, 2.0, (3, 2)).astype(np.float32)
  perm = meta.COCO.flip_permutation
  keypoints, maxvals = jax.jit(predict_step.image_joints_fn(model, 2, perm, (16, 8)))(
      variables, crops, centers, scales)
  out = predict_step.make_predict_fn(model, 2, perm)(variables, crops)
  np.testing.assert_array_equal(np.asarray(maxvals), np.asarray(out["maxvals"]))
  host = codec.heatmap_to_image(np.asarray(out["coords"]), centers, scales, (16, 8))
  np.testing.assert_allclose(np.asarray(keypoints), host, atol=1e-3, rtol=0)
  assert keypoints.shape == (3, 2, 17, 2) and keypoints.dtype == jnp.float32
