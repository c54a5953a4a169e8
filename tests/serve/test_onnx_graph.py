"""The serving steps as ONNX nodes (serve/onnx_graph.py) against their JAX / numpy originals:
quarter-offset decoding bit for bit on hand-made edge cases and random heatmaps, the inverse
affine, the flip average, the normalisation."""

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
import onnxruntime  # noqa: E402

from mipnet_jax.core import codec  # noqa: E402
from mipnet_jax.core.normalize import normalize  # noqa: E402
from mipnet_jax.eval import predict_step  # noqa: E402
from mipnet_jax.serve import onnx_graph  # noqa: E402
from mipnet_jax.serve.onnx_graph import Graph, value_info  # noqa: E402


def run(build, feeds: dict, dtypes: dict, ranks):
  """Builds ``build(g, *input names) -> output names`` (float32, of ``ranks``) and runs it on
  ``feeds``."""
  g = Graph()
  outs = build(g, *feeds)
  outs = [outs] if isinstance(outs, str) else list(outs)
  model = g.model([value_info(k, dtypes[k], v.shape) for k, v in feeds.items()],
                  [value_info(o, np.float32, [f"d{i}" for i in range(r)])
                   for o, r in zip(outs, ranks)], "test")
  session = onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  return session.run(outs, feeds)


def edge_case_heatmaps():
  """[1, 1, 6, 8, 10] (b, N, K, h, w): one case per joint."""
  hm = np.zeros((6, 8, 10), np.float32)
  hm[0] = -1.0; hm[0, 3, 4] = -0.5                 # all <= 0: (0, 0), maxval -0.5
  hm[1, 2, 3] = hm[1, 5, 6] = 1.0                  # tie: the first in row-major order
  hm[2, 0, 4] = 1.0; hm[2, 0, 5] = 0.5             # top row: no offset
  hm[3, 4, 5] = 1.0; hm[3, 4, 6] = hm[3, 4, 4] = 0.3   # equal neighbours: no x shift
  hm[3, 3, 5] = 0.2                                # larger upper neighbour: y - 0.25
  hm[4, 3, 3] = 1.0; hm[4, 3, 4] = 0.6; hm[4, 4, 3] = 0.1   # right and down: +0.25 each
  hm[5, 6, 8] = 1.0                                # x = w - 2, y = h - 2: inside
  return hm.transpose(1, 2, 0)[None, None]         # [1, 1, h, w, K] (the codec's layout)


def test_decode_quarter_equals_codec_bit_for_bit():
  rng = np.random.default_rng(0)
  for hm in (edge_case_heatmaps(), rng.normal(size=(3, 2, 16, 12, 17)).astype(np.float32)):
    want_xy, want_max = codec.decode_heatmaps(hm)
    nchw = np.ascontiguousarray(np.moveaxis(hm, -1, 2))        # [b, N, K, h, w]
    xy, maxv = run(lambda g, h: onnx_graph.decode_quarter(g, h, hm.shape[2:4]),
                   {"heat": nchw}, {"heat": np.float32}, (4, 3))
    np.testing.assert_array_equal(xy, want_xy)
    np.testing.assert_array_equal(maxv, want_max)
  edge, _ = codec.decode_heatmaps(edge_case_heatmaps())
  np.testing.assert_array_equal(edge[0, 0], [[0, 0], [3, 2], [4, 0], [5, 3.75], [3.25, 3.25],
                                             [8, 6]])


def test_heatmap_to_image_equals_the_device_arithmetic():
  rng = np.random.default_rng(1)
  coords = rng.uniform(0, 48, (4, 2, 17, 2)).astype(np.float32)
  centers = rng.uniform(50, 500, (4, 2)).astype(np.float32)
  scales = rng.uniform(0.3, 3, (4, 2)).astype(np.float32)
  got, = run(lambda g, c, ce, s: onnx_graph.heatmap_to_image(g, c, ce, s, (64, 48)),
             dict(coords=coords, centers=centers, scales=scales),
             dict(coords=np.float32, centers=np.float32, scales=np.float32), (4,))
  device = np.asarray(codec.heatmap_to_image(coords, centers, scales, (64, 48), xp=jnp))
  host = codec.heatmap_to_image(coords, centers, scales, (64, 48))        # float64
  np.testing.assert_allclose(got, device, rtol=0, atol=1e-4)
  np.testing.assert_allclose(got, host, rtol=0, atol=1e-3)


def test_normalize_mirror_and_flip_average():
  rng = np.random.default_rng(2)
  crops = rng.integers(0, 256, (2, 8, 6, 3), np.uint8)
  both, = run(lambda g, c: onnx_graph.with_mirror(g, onnx_graph.normalize(g, c)),
              {"crops": crops}, {"crops": np.uint8}, (4,))
  want = np.asarray(normalize(crops)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(both[:2], want, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(both[2:], both[:2, :, :, ::-1])
  perm = np.array([0, 2, 1, 4, 3])
  heat = rng.normal(size=(4, 2, 5, 4, 6)).astype(np.float32)    # [2b, N, K, h, w]
  got, = run(lambda g, h: onnx_graph.flip_average(g, h, perm), {"heat": heat},
             {"heat": np.float32}, (5,))
  nhwc = heat.transpose(0, 1, 3, 4, 2)
  want = (nhwc[:2] + np.asarray(predict_step.flip_back(nhwc[2:], perm))) * 0.5
  np.testing.assert_allclose(got, want.transpose(0, 1, 4, 2, 3), rtol=0, atol=1e-7)
