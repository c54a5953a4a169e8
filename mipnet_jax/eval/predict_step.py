"""The predict step: uint8 crops -> heatmaps or decoded joints of every instance, on device.

Per box: normalise, run the trunk once and the lambda head for all N instances
(``predict_instances``); with flip test, the mirrored crop goes through the same batch and its
heatmaps come back as the reference's ``flip_back`` + SHIFT_HEATMAP do: mirror the width,
exchange the left/right channels, move every column one pixel right (column 0 keeps its
value), then average with the unflipped heatmaps. Under UDP (mmpose's ``shift_heatmap=False``)
there is no shift: input pixel x mirrors to w - 1 - x, which lands on heatmap pixel
w/4 - 1 - x' exactly. Decoding (argmax + quarter offset) runs on the device with the host's
float32 operations; DARK and UDP-DARK decoding in evaluation take the heatmaps to the host
(cv2's blur, as the references); the serving function decodes UDP-DARK on the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax.core import codec
from mipnet_jax.core.normalize import normalize

DECODES = ("quarter", "dark", "udp_dark")


def flip_back(heatmaps: jax.Array, flip_permutation: np.ndarray, shift: bool = True) -> jax.Array:
  """Heatmaps of mirrored crops [..., h, w, K] -> the unmirrored crop's frame [..., h, w, K];
  ``shift=False`` (UDP) leaves out the one-column shift."""
  mirrored = jnp.flip(heatmaps, axis=-2)[..., flip_permutation]
  if not shift:
    return mirrored
  return jnp.concatenate([mirrored[..., :1, :], mirrored[..., :-1, :]], axis=-2)


def predict_heatmaps(model, variables, images: jax.Array, num_instances: int,
                     flip_permutation: np.ndarray | None, shift: bool = True) -> jax.Array:
  """uint8 crops [B, h, w, 3] -> heatmaps [B, N, h/4, w/4, K] (flip-averaged when a
  permutation is given; ``shift`` as ``flip_back``)."""
  x = normalize(images)
  if flip_permutation is None:
    return model.apply(variables, x, num_instances, method=model.predict_instances)
  both = jnp.concatenate([x, jnp.flip(x, axis=2)], axis=0)
  heat = model.apply(variables, both, num_instances, method=model.predict_instances)
  plain, mirrored = jnp.split(heat, 2, axis=0)
  return (plain + flip_back(mirrored, flip_permutation, shift)) * 0.5


def make_predict_fn(model, num_instances: int, flip_permutation: np.ndarray | None,
                    decode: str = "quarter"):
  """A jitted ``fn(variables, images uint8 [B, h, w, 3]) -> dict``: ``decode="quarter"``
  decodes on the device, giving ``coords`` [B, N, K, 2] (heatmap pixels) and ``maxvals``
  [B, N, K]; ``decode="dark"`` and ``"udp_dark"`` return ``heatmaps`` [B, N, h/4, w/4, K]
  for the host (``decode_on_host``). ``"udp_dark"`` is UDP's: flip test without the shift."""
  if decode not in DECODES:
    raise ValueError(f"decode must be 'quarter', 'dark' or 'udp_dark', got {decode!r}")
  perm = None if flip_permutation is None else np.asarray(flip_permutation)
  shift = decode != "udp_dark"

  @jax.jit
  def predict(variables, images):
    heat = predict_heatmaps(model, variables, images, num_instances, perm, shift)
    if decode == "quarter":
      coords, maxvals = codec.decode_heatmaps(heat, xp=jnp)
      return dict(coords=coords, maxvals=maxvals)
    return dict(heatmaps=heat)

  return predict


def decode_on_host(outputs: dict, decode: str = "dark") -> tuple[np.ndarray, np.ndarray]:
  """The predict step's outputs -> (coords [B, N, K, 2], maxvals [B, N, K]) numpy: the
  device's quarter-offset decoding, or ``decode`` ("dark" or "udp_dark") of the heatmaps
  here."""
  if "coords" in outputs:
    return np.asarray(outputs["coords"]), np.asarray(outputs["maxvals"])
  if decode == "udp_dark":
    return codec.decode_udp_dark(np.asarray(outputs["heatmaps"]))
  return codec.decode_dark(np.asarray(outputs["heatmaps"]))


def image_joints_fn(model, num_instances: int, flip_permutation: np.ndarray | None,
                    heatmap_hw: tuple[int, int], udp: bool = False):
  """``f(variables, crops uint8 [b, h, w, 3], centers [b, 2], scales [b, 2]) ->
  (keypoints [b, N, K, 2] image pixels, maxvals [b, N, K])`` (not jitted): the predict
  step with quarter-offset decoding (``udp``: UDP-DARK decoding, flip test without shift)
  and ``codec.heatmap_to_image`` on the device, the function that export serializes and the
  Predictor runs."""
  perm = None if flip_permutation is None else np.asarray(flip_permutation)

  def predict(variables, crops, centers, scales):
    heat = predict_heatmaps(model, variables, crops, num_instances, perm, shift=not udp)
    if udp:
      coords, maxvals = codec.decode_udp_dark(heat, xp=jnp)
    else:
      coords, maxvals = codec.decode_heatmaps(heat, xp=jnp)
    return codec.heatmap_to_image(coords, centers, scales, heatmap_hw, xp=jnp,
                                  udp=udp), maxvals

  return predict
