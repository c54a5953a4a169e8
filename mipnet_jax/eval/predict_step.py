"""The predict step: uint8 crops -> heatmaps or decoded joints of every instance, on device.

Per box: normalise, run the trunk once and the lambda head for all N instances
(``predict_instances``); with flip test, the mirrored crop goes through the same batch and its
heatmaps come back as the reference's ``flip_back`` + SHIFT_HEATMAP do: mirror the width,
exchange the left/right channels, move every column one pixel right (column 0 keeps its
value), then average with the unflipped heatmaps. Decoding (argmax + quarter offset) runs on
the device with the host's float32 operations; DARK decoding needs the heatmaps on the host.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mipnet_jax.core import codec
from mipnet_jax.core.normalize import normalize


def flip_back(heatmaps: jax.Array, flip_permutation: np.ndarray) -> jax.Array:
  """Heatmaps of mirrored crops [..., h, w, K] -> the unmirrored crop's frame [..., h, w, K]."""
  mirrored = jnp.flip(heatmaps, axis=-2)[..., flip_permutation]
  return jnp.concatenate([mirrored[..., :1, :], mirrored[..., :-1, :]], axis=-2)


def predict_heatmaps(model, variables, images: jax.Array, num_instances: int,
                     flip_permutation: np.ndarray | None) -> jax.Array:
  """uint8 crops [B, h, w, 3] -> heatmaps [B, N, h/4, w/4, K] (flip-averaged when a
  permutation is given)."""
  x = normalize(images)
  if flip_permutation is None:
    return model.apply(variables, x, num_instances, method=model.predict_instances)
  both = jnp.concatenate([x, jnp.flip(x, axis=2)], axis=0)
  heat = model.apply(variables, both, num_instances, method=model.predict_instances)
  plain, mirrored = jnp.split(heat, 2, axis=0)
  return (plain + flip_back(mirrored, flip_permutation)) * 0.5


def make_predict_fn(model, num_instances: int, flip_permutation: np.ndarray | None,
                    decode: str = "quarter"):
  """A jitted ``fn(variables, images uint8 [B, h, w, 3]) -> dict``: ``decode="quarter"``
  decodes on the device, giving ``coords`` [B, N, K, 2] (heatmap pixels) and ``maxvals``
  [B, N, K]; ``decode="dark"`` returns ``heatmaps`` [B, N, h/4, w/4, K] for the host
  (``decode_on_host``)."""
  if decode not in ("quarter", "dark"):
    raise ValueError(f"decode must be 'quarter' or 'dark', got {decode!r}")
  perm = None if flip_permutation is None else np.asarray(flip_permutation)

  @jax.jit
  def predict(variables, images):
    heat = predict_heatmaps(model, variables, images, num_instances, perm)
    if decode == "quarter":
      coords, maxvals = codec.decode_heatmaps(heat, xp=jnp)
      return dict(coords=coords, maxvals=maxvals)
    return dict(heatmaps=heat)

  return predict


def decode_on_host(outputs: dict) -> tuple[np.ndarray, np.ndarray]:
  """The predict step's outputs -> (coords [B, N, K, 2], maxvals [B, N, K]) numpy: the
  device's quarter-offset decoding, or DARK decoding of the heatmaps here."""
  if "coords" in outputs:
    return np.asarray(outputs["coords"]), np.asarray(outputs["maxvals"])
  return codec.decode_dark(np.asarray(outputs["heatmaps"]))


def image_joints_fn(model, num_instances: int, flip_permutation: np.ndarray | None,
                    heatmap_hw: tuple[int, int]):
  """``f(variables, crops uint8 [b, h, w, 3], centers [b, 2], scales [b, 2]) ->
  (keypoints [b, N, K, 2] image pixels, maxvals [b, N, K])`` (not jitted): the predict
  step with quarter-offset decoding and ``codec.heatmap_to_image`` on the device, the
  function that export serializes and the Predictor runs."""
  perm = None if flip_permutation is None else np.asarray(flip_permutation)

  def predict(variables, crops, centers, scales):
    heat = predict_heatmaps(model, variables, crops, num_instances, perm)
    coords, maxvals = codec.decode_heatmaps(heat, xp=jnp)
    return codec.heatmap_to_image(coords, centers, scales, heatmap_hw, xp=jnp), maxvals

  return predict
