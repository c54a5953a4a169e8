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
  with pytest.raises(ValueError,
                     match="decode must be 'quarter', 'dark' or 'udp_dark', got 'argmax'"):
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


# ---- UDP: flip test without the shift, UDP-DARK decoding --------------------------------------

def test_udp_flip_back_is_mmpose_flip_back_without_shift():
  """mmpose's flip_back: swap the left/right channels, mirror the width; shift_heatmap=False."""
  x = np.random.default_rng(0).normal(size=(2, 17, 6, 5)).astype(np.float32)     # NCHW
  want = x.copy()
  for left, right in meta.COCO.flip_pairs:
    want[:, left], want[:, right] = x[:, right], x[:, left]
  want = want[..., ::-1]
  got = predict_step.flip_back(jnp.asarray(x.transpose(0, 2, 3, 1)), meta.COCO.flip_permutation,
                               shift=False)
  np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), want)


def test_udp_flipped_crop_decodes_to_the_mirrored_joints():
  """Targets of a crop and of its mirror (x -> w - 1 - x, left/right swapped): flipped back
  without shift, the mirror's maps decode to the crop's joints (UDP's stride puts input pixel
  w - 1 - x on heatmap pixel w/4 - 1 - x'); the one-column shift would move them by a pixel."""
  rng = np.random.default_rng(1)
  joints = rng.uniform([20, 20], [172, 236], (17, 2)).astype(np.float32)
  mirrored = joints[meta.COCO.flip_permutation].copy()
  mirrored[:, 0] = 191 - mirrored[:, 0]
  maps = [codec.encode_heatmaps(j, np.ones(17), (256, 192), (64, 48), 2.0, udp=True)[0]
          for j in (joints, mirrored)]
  want, _ = codec.decode_udp_dark(maps[0][None])
  for shift, error in ((False, 1e-4), (True, 0.9)):
    back = np.asarray(predict_step.flip_back(jnp.asarray(maps[1]), meta.COCO.flip_permutation,
                                             shift))
    got, _ = codec.decode_udp_dark(back[None])
    if shift:
      assert np.abs(got - want)[..., 0].min() > error              # every joint one pixel off
    else:
      np.testing.assert_allclose(got, want, atol=error)
  np.testing.assert_allclose(want[0] * [191 / 47, 255 / 63], joints, atol=1e-3)


def test_udp_predict_fn_and_serving_function_agree(tiny_model):
  """Evaluation: heatmaps to the host, cv2's post_dark_udp, UDP's transform_preds (float32);
  serving (``image_joints_fn(udp=True)``): all on the device. Same flip test (no shift: a
  shift on one side only would move the joints by a heatmap pixel)."""
  model, variables = tiny_model(n=2, image_hw=(64, 32))
  rng = np.random.default_rng(2)
  crops = jnp.asarray(rng.integers(0, 256, (3, 64, 32, 3), np.uint8))
  centers = rng.uniform(50, 300, (3, 2)).astype(np.float32)
  scales = rng.uniform(0.3, 2, (3, 2)).astype(np.float32)
  perm = meta.COCO.flip_permutation
  raw = predict_step.make_predict_fn(model, 2, perm, "udp_dark")(variables, crops)
  coords, maxvals = predict_step.decode_on_host(raw, "udp_dark")
  want_c, want_m = codec.decode_udp_dark(np.asarray(raw["heatmaps"]))
  np.testing.assert_array_equal(coords, want_c)
  np.testing.assert_array_equal(maxvals, want_m)
  host = codec.heatmap_to_image(coords, centers, scales, (16, 8), udp=True)
  keypoints, d_max = jax.jit(predict_step.image_joints_fn(model, 2, perm, (16, 8), udp=True))(
      variables, crops, centers, scales)
  np.testing.assert_allclose(np.asarray(d_max), maxvals, rtol=1e-5)
  # Random weights make peakless maps whose Newton step can be ill-conditioned (steps of
  # hundreds of pixels, where float32 and float64 part); compare the joints whose step stays
  # under a heatmap pixel, as a trained model's do, and require most joints to be such.
  heat = np.moveaxis(np.asarray(raw["heatmaps"]), -1, -3).reshape(3, 2, 17, -1)
  argmax = np.stack([heat.argmax(-1) % 8, heat.argmax(-1) // 8], -1)
  sane = np.abs(coords - argmax).max(-1) < 1
  assert sane.mean() > 0.3
  px = np.broadcast_to((scales * 200 / [7, 15])[:, None, None], host.shape)   # per heatmap px
  np.testing.assert_array_less(np.abs(np.asarray(keypoints) - host)[sane], 1e-3 * px[sane])
