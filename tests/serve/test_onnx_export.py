"""model.onnx (serve/onnx_export.py) against the bundle's JAX function: heatmaps within 1e-4 of
their scale, keypoints and joint scores equal to decoding them, keypoints equal to JAX's
wherever the argmax is unambiguous, for HRNet and SimpleBaseline, N = 1 and 2, batch 1 and 3
(one file, dynamic batch; ``conditioned_variables``); the bundle's ONNX runtime gives the JAX
runtime's poses and runs in a process without JAX."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
import onnxruntime  # noqa: E402

from conftest import REPO_ROOT, conditioned_variables  # noqa: E402
from mipnet_jax.core import codec  # noqa: E402
from mipnet_jax.core.meta import get_meta  # noqa: E402
from mipnet_jax.core.normalize import normalize  # noqa: E402
from mipnet_jax.eval import predict_step  # noqa: E402
from mipnet_jax.serve import bundle, onnx_export  # noqa: E402
from mipnet_jax.serve.predictor import Predictor  # noqa: E402

HW, HEAT_HW = (96, 64), (24, 16)
PERM = get_meta("coco").flip_permutation


def unambiguous(heat: np.ndarray, tol: float) -> np.ndarray:
  """[..., h, w, K] -> [..., K] True where the decoded point cannot move under a change of
  ``tol``: the top value leads the second by more, and so do the two neighbours that set
  the quarter offset (or the peak is on the border, where no offset applies)."""
  hm = np.moveaxis(heat, -1, -3)
  h, w = hm.shape[-2:]
  flat = hm.reshape(hm.shape[:-2] + (-1,))
  top2 = np.sort(flat, -1)[..., -2:]
  ok = top2[..., 1] - top2[..., 0] > tol
  idx = flat.argmax(-1)
  y, x = idx // w, idx % w
  inside = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
  cx, cy = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
  at = lambda yy, xx: np.take_along_axis(flat, (yy * w + xx)[..., None], -1)[..., 0]  # noqa
  sharp = ((np.abs(at(cy, cx + 1) - at(cy, cx - 1)) > tol) &
           (np.abs(at(cy + 1, cx) - at(cy - 1, cx)) > tol))
  return ok & (sharp | ~inside)


@pytest.mark.parametrize("arch", ["hrnet", "simple_baseline"])
@pytest.mark.parametrize("n", [1, 2])
def test_onnx_equals_the_bundle_function(tiny_model, arch, n):
  model, variables = tiny_model(arch, n=n, image_hw=HW, **(
      {} if n == 2 else dict(mimb_slots=(False,) * 4)))
  rng = np.random.default_rng(3)
  crops = rng.integers(0, 256, (3, *HW, 3), np.uint8)
  x = np.asarray(normalize(crops))
  variables = conditioned_variables(model, variables, np.concatenate([x, x[:, :, ::-1]]), n)
  proto = onnx_export.serving_model(model, variables, n, PERM, HW, HEAT_HW)
  session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
  centers = rng.uniform(50, 400, (3, 2)).astype(np.float32)
  scales = rng.uniform(0.5, 3, (3, 2)).astype(np.float32)
  want_kp, want_mv = jax.jit(predict_step.image_joints_fn(model, n, PERM, HEAT_HW))(
      variables, crops, centers, scales)
  want_heat = np.asarray(jax.jit(lambda v, c: predict_step.predict_heatmaps(
      model, v, c, n, PERM))(variables, crops))
  scale = want_heat.std()
  for b in (1, 3):
    kp, mv, heat = session.run(None, dict(crops=crops[:b], centers=centers[:b],
                                          scales=scales[:b]))
    assert kp.shape == (b, n, 17, 2) and mv.shape == (b, n, 17) and heat.shape == (
        b, n, *HEAT_HW, 17)
    np.testing.assert_allclose(heat, want_heat[:b], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(mv, np.asarray(want_mv)[:b], rtol=0, atol=1e-4 * scale)
    # The graph's decoding of its own heatmaps is codec's (and the device's inverse affine).
    xy, maxvals = codec.decode_heatmaps(heat)
    np.testing.assert_array_equal(mv, maxvals)
    np.testing.assert_allclose(kp, np.asarray(codec.heatmap_to_image(
        xy, centers[:b], scales[:b], HEAT_HW, xp=jnp)), rtol=0, atol=1e-4)
    # Versus JAX: equal wherever float32 rounding cannot move the argmax or the offset.
    sure = unambiguous(want_heat[:b], 1e-3 * scale)
    assert sure.mean() > 0.9
    np.testing.assert_allclose(kp[sure], np.asarray(want_kp)[:b][sure], rtol=0, atol=1e-3)


def test_bundle_onnx_runtime_gives_the_jax_runtime_poses(served_model, coco):
  from mipnet_jax.data.image import read_image
  folder = served_model[2]
  assert bundle.read_manifest(folder)["onnx"] == "model.onnx"
  image = read_image(str(coco / "000000000785.jpg"))
  boxes = np.array([[280, 40, 230, 380], [300, 60, 100, 300]], np.float32)
  by_runtime = {r: Predictor.from_bundle(folder, r)(image, boxes) for r in ("jax", "onnx")}
  jax_poses, onnx_poses = by_runtime["jax"], by_runtime["onnx"]
  assert len(onnx_poses) == len(jax_poses) > 0
  for a, b in zip(jax_poses, onnx_poses):
    assert (a.lam, a.box.tolist()) == (b.lam, b.box.tolist())
    np.testing.assert_allclose(b.keypoints[:, :2], a.keypoints[:, :2], rtol=0, atol=1e-3)
    np.testing.assert_allclose(b.keypoints[:, 2], a.keypoints[:, 2], rtol=1e-4, atol=1e-5)
    assert b.score == pytest.approx(a.score, rel=1e-4)


NO_JAX = """
import sys
sys.modules["jax"] = None            # importing JAX now fails
import numpy as np
from mipnet_jax.serve import bundle
folder, out = sys.argv[1:]
predict = bundle.load_bundle(folder, runtime="onnx")
image = np.full((120, 90, 3), 90, np.uint8)
image[30:90, 30:60] = 200
kp, mv = predict(image, np.array([[10, 10, 70, 100]], np.float32))
np.savez(out, kp=kp, mv=mv)
"""


def test_onnx_bundle_runs_without_jax(served_model, tmp_path):
  folder = served_model[2]
  done = subprocess.run([sys.executable, "-c", NO_JAX, folder, str(tmp_path / "o.npz")],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  got = np.load(tmp_path / "o.npz")
  image = np.full((120, 90, 3), 90, np.uint8)
  image[30:90, 30:60] = 200
  kp, mv = bundle.load_bundle(folder)(image, np.array([[10, 10, 70, 100]], np.float32))
  assert got["kp"].shape == (1, 2, 17, 2)
  np.testing.assert_allclose(got["mv"], mv, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got["kp"], kp, rtol=0, atol=1e-2)


def test_bundle_runtime_errors(served_model, tmp_path):
  config, checkpoint, folder = served_model
  with pytest.raises(bundle.BundleError, match=r"runtime must be one of jax, onnx, got 'tf'"):
    bundle.load_bundle(folder, "tf")
  plain = tmp_path / "plain"
  plain.mkdir()
  for name in ("bundle.json", "config.json"):
    manifest = json.load(open(os.path.join(folder, name)))
    manifest.pop("onnx", None)
    (plain / name).write_text(json.dumps(manifest))
  with pytest.raises(bundle.BundleError, match=r"plain: the bundle has no model\.onnx \(export "
                                               r"it with --export_onnx\)$"):
    bundle.load_bundle(str(plain), "onnx")
  manifest["onnx"] = "model.onnx"
  (plain / "bundle.json").write_text(json.dumps(dict(
      json.load(open(os.path.join(folder, "bundle.json"))), onnx="model.onnx")))
  (plain / "model.onnx").write_bytes(b"\x00junk")
  with pytest.raises(bundle.BundleError, match=r"model\.onnx: not a usable ONNX model \("):
    bundle.load_bundle(str(plain), "onnx")
