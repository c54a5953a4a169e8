"""The standalone bundle runner (serve/bundle.py): a bundle reloaded in a fresh process that
imports only this module gives the in-process model's outputs bit for bit; host crops equal the
evaluation crops; batch buckets; one-line errors for what is not a bundle."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, tiny_checkpoint
from mipnet_jax.core import codec
from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval import predict_step
from mipnet_jax.serve import bundle, export

# Runs in a fresh interpreter: load the bundle, run the exported function at batch sizes 1
# and 3, report which heavy modules got imported.
FRESH = """
import sys
import numpy as np
from mipnet_jax.serve import bundle
folder, inputs, outputs = sys.argv[1:]
predict = bundle.load_bundle(folder)
d = np.load(inputs)
out = {}
for b in (1, 3):
  kp, mv = predict.crops_fn(d["crops"][:b], d["centers"][:b], d["scales"][:b])
  out[f"keypoints{b}"], out[f"maxvals{b}"] = np.asarray(kp), np.asarray(mv)
out["run_kp"], out["run_mv"] = predict(d["image"], d["boxes"])
heavy = [m for m in ("flax", "optax", "grain", "mipnet_jax.models", "mipnet_jax.eval",
                     "mipnet_jax.train", "mipnet_jax.data.pipeline") if m in sys.modules]
np.savez(outputs, heavy=np.array(heavy + [""]), **out)
"""


def _inputs(config, rng):
  image = rng.integers(0, 256, (180, 150, 3), np.uint8)
  boxes = np.array([[10, 20, 60, 120], [70.5, 5, 70, 150], [0, 0, 150, 180]], np.float32)
  crops, centers, scales = bundle.boxes_to_crops(image, boxes, tuple(config.data.image_hw),
                                                 config.data.color)
  return dict(image=image, boxes=boxes, crops=crops, centers=centers, scales=scales)


@pytest.mark.parametrize("arg,n", [("quick,baseline", 1), ("quick", 2)])
def test_exported_bundle_in_a_fresh_process_equals_the_in_process_model(load_config, tmp_path,
                                                                        arg, n):
  config = load_config("hrnet_w32_synthetic_256x192", arg)
  model, variables, _ = tiny_checkpoint(config, tmp_path / "ckpt")
  export.export_bundle(config, model, variables, str(tmp_path / "bundle"), "random")
  data = _inputs(config, np.random.default_rng(n))
  np.savez(tmp_path / "in.npz", **data)
  fresh = subprocess.Popen([sys.executable, "-c", FRESH, str(tmp_path / "bundle"),
                            str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], cwd=REPO_ROOT)
  perm = get_meta("synthetic").flip_permutation        # meanwhile, the in-process model
  fn = jax.jit(predict_step.image_joints_fn(model, n, perm, tuple(config.data.heatmap_hw)))
  want = {b: fn(variables, data["crops"][:b], data["centers"][:b], data["scales"][:b])
          for b in (1, 3)}
  if n == 2:   # the evaluation path: make_predict_fn + the host's float64 inverse affine
    out = predict_step.make_predict_fn(model, n, perm, "quarter")(variables, data["crops"])
    xy = codec.heatmap_to_image(np.asarray(out["coords"]), data["centers"], data["scales"],
                                tuple(config.data.heatmap_hw))
  assert fresh.wait(timeout=300) == 0
  got = np.load(tmp_path / "out.npz")
  assert list(got["heavy"]) == [""]                       # no flax, no model code
  for b, (kp, mv) in want.items():
    assert got[f"keypoints{b}"].shape == (b, n, 17, 2) and got[f"maxvals{b}"].shape == (b, n, 17)
    # Same StableHLO, same XLA:CPU: bit for bit.
    np.testing.assert_array_equal(got[f"keypoints{b}"], np.asarray(kp))
    np.testing.assert_array_equal(got[f"maxvals{b}"], np.asarray(mv))
  # The image + boxes call crops on the host, pads 3 boxes to a batch of 4: the same numbers
  # up to XLA:CPU's batch-size-dependent summation (on an AVX2-only AMD EPYC the batch of 4
  # moved maxvals by 3e-7 relative; elsewhere bit for bit).
  np.testing.assert_allclose(got["run_kp"], got["keypoints3"], rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(got["run_mv"], got["maxvals3"], rtol=1e-6, atol=1e-7)
  if n == 2:   # versus evaluation: equal joint scores, coordinates within float32 rounding
    np.testing.assert_array_equal(got["maxvals3"], np.asarray(out["maxvals"]))
    np.testing.assert_allclose(got["keypoints3"], xy, atol=1e-3, rtol=0)


def test_box_predictor_runs_in_padded_chunks():
  """run() cuts M boxes into chunks of the batch size, pads each to its bucket with copies
  of its first box, and keeps only the real rows."""
  calls = []

  def crops_fn(crops, centers, scales):
    calls.append(len(crops))
    kp = np.broadcast_to(centers[:, None, None, :], (len(crops), 2, 3, 2))
    return kp, np.broadcast_to(scales[:, :1, None], (len(crops), 2, 3))

  manifest = dict(input_hw=[8, 6], num_instances=2, num_keypoints=3, batch_size=4,
                  color="rgb", box_padding=1.25)
  predictor = bundle.BoxPredictor(crops_fn, manifest)
  centers = np.arange(14, dtype=np.float32).reshape(7, 2)
  scales = np.arange(7, dtype=np.float32)[:, None].repeat(2, 1)
  kp, mv = predictor.run(np.zeros((7, 8, 6, 3), np.uint8), centers, scales)
  assert calls == [4, 4]                                     # 4 boxes, then 3 padded to 4
  np.testing.assert_array_equal(kp, np.broadcast_to(centers[:, None, None], (7, 2, 3, 2)))
  np.testing.assert_array_equal(mv, np.broadcast_to(scales[:, :1, None], (7, 2, 3)))
  assert kp.dtype == mv.dtype == np.float32


def test_batch_buckets_are_powers_of_two_up_to_the_batch_size():
  assert [bundle.batch_bucket(c, 8) for c in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
  assert bundle.batch_bucket(5, 6) == 6


def test_whole_image_box():
  box = bundle.whole_image_box(np.zeros((425, 640, 3), np.uint8))
  np.testing.assert_array_equal(box, [[0, 0, 640, 425]])
  assert box.dtype == np.float32


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_host_crops_equal_the_evaluation_crops(shared_data, color):
  from mipnet_jax.data import boxes, image, transforms
  coco = shared_data / "coco"
  found, _ = boxes.load_detections(str(coco / "test_coco_det_AP_H_56.json"),
                                   str(coco / "test_coco.json"), str(coco), (128, 96))
  found = [b for b in found if b.image_id == 785][:5]
  rgb = image.read_image(found[0].image_path, "rgb")
  crops, centers, scales = bundle.boxes_to_crops(rgb, np.stack([b.box for b in found]),
                                                 (128, 96), color)
  sample = transforms.EvalSample(transforms.CropSpec((128, 96), color))
  for i, box in enumerate(found):
    want = sample.map(box)
    np.testing.assert_array_equal(crops[i], want["image"])
    np.testing.assert_array_equal(centers[i], want["center"])
    np.testing.assert_array_equal(scales[i], want["scale"])


def test_what_is_not_a_bundle_is_a_one_line_error(tmp_path):
  with pytest.raises(bundle.BundleError) as info:
    bundle.load_bundle(str(tmp_path))
  assert str(info.value) == f"{tmp_path}: not an inference bundle (bundle.json not found)"
  (tmp_path / "bundle.json").write_text("{")
  with pytest.raises(bundle.BundleError, match=r"bundle\.json: not valid JSON \("):
    bundle.read_manifest(str(tmp_path))
  (tmp_path / "bundle.json").write_text(json.dumps({"format": "other", "version": 1}))
  with pytest.raises(bundle.BundleError) as info:
    bundle.read_manifest(str(tmp_path))
  assert str(info.value) == (f"{tmp_path / 'bundle.json'}: expected format 'mipnet_jax.bundle' "
                             "version 1, got 'other' version 1")
  (tmp_path / "bundle.json").write_text(json.dumps({"format": "mipnet_jax.bundle",
                                                    "version": 1}))
  with pytest.raises(bundle.BundleError) as info:
    bundle.load_function(str(tmp_path))
  assert str(info.value) == f"{tmp_path / 'predict.jax'}: exported function not found"
  assert issubclass(bundle.BundleError, ValueError)          # main: exit 2, one line


def test_udp_bundles_cut_udp_crops():
  """The manifest's "udp" picks the crop geometry; bundles without it are HRNet's."""
  import cv2

  from mipnet_jax.core import geometry
  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (180, 150, 3), np.uint8)
  boxes = np.array([[10, 20, 60, 120], [70.5, 5, 70, 150]], np.float32)
  manifest = {"input_hw": [64, 48], "num_instances": 1, "num_keypoints": 17, "color": "rgb",
              "box_padding": 1.25, "udp": True}
  crops, centers, scales = bundle.BoxPredictor(None, manifest).crops(image, boxes)
  for i in range(2):
    trans = geometry.udp_crop_transform(centers[i], scales[i], 0.0, (64, 48))
    np.testing.assert_array_equal(crops[i], cv2.warpAffine(image, trans, (48, 64),
                                                           flags=cv2.INTER_LINEAR))
  del manifest["udp"]
  hrnet, _, _ = bundle.BoxPredictor(None, manifest).crops(image, boxes)
  np.testing.assert_array_equal(hrnet, bundle.boxes_to_crops(image, boxes, (64, 48))[0])
  assert np.abs(hrnet.astype(int) - crops).mean() > 1
