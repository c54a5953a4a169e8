"""The inference bundle: the exported function, reloaded in a fresh process that imports only
the serving module, gives the in-process model's outputs; the bundle's files are reusable."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from _tiny_model import tiny
from conftest import REPO_ROOT
from mipnet_jax import checkpoints
from mipnet_jax.core import codec
from mipnet_jax.serve import export, bundle as serving
from mipnet_jax.eval import predict_step as inference
from mipnet_jax.core.meta import get_meta

# Runs in a fresh interpreter: load the bundle, run the exported function at batch sizes 1
# and 3, report which heavy modules got imported.
FRESH = """
import sys
import numpy as np
from mipnet_jax.serve import bundle as serving
bundle, inputs, outputs = sys.argv[1:]
predict = serving.load_bundle(bundle)
d = np.load(inputs)
out = {}
for b in (1, 3):
  kp, mv = predict.crops_fn(d["crops"][:b], d["centers"][:b], d["scales"][:b])
  out[f"keypoints{b}"], out[f"maxvals{b}"] = np.asarray(kp), np.asarray(mv)
heavy = [m for m in ("flax", "optax", "grain", "mipnet_jax.models", "mipnet_jax.evaluate")
         if m in sys.modules]
np.savez(outputs, heavy=np.array(heavy + [""]), **out)
"""


def _inputs(config, rng):
  image = rng.integers(0, 256, (180, 150, 3), np.uint8)
  boxes = np.array([[10, 20, 60, 120], [70.5, 5, 70, 150], [0, 0, 150, 180]], np.float32)
  crops, centers, scales = serving.boxes_to_crops(image, boxes, tuple(config.data.image_hw),
                                                  config.data.color)
  return dict(image=image, boxes=boxes, crops=crops, centers=centers, scales=scales)


@pytest.mark.parametrize("arg,n", [("quick,baseline", 1), ("quick", 2)])
def test_exported_bundle_in_a_fresh_process_equals_the_in_process_model(load_config, tmp_path,
                                                                        arg, n):
  config = load_config("hrnet_w32_synthetic_256x192", arg)
  model, variables, _ = tiny(config, tmp_path / "ckpt")
  paths = export.export_bundle(config, model, variables, str(tmp_path / "bundle"), "random")
  data = _inputs(config, np.random.default_rng(n))
  np.savez(tmp_path / "in.npz", **data)
  fresh = subprocess.Popen([sys.executable, "-c", FRESH, str(tmp_path / "bundle"),
                            str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], cwd=REPO_ROOT)
  perm = get_meta("synthetic").flip_permutation        # meanwhile, the in-process model
  fn = jax.jit(export.serving_function(model, n, perm, tuple(config.data.heatmap_hw)))
  want = {b: fn(variables, data["crops"][:b], data["centers"][:b], data["scales"][:b])
          for b in (1, 3)}
  if n == 2:   # the evaluation path: make_predict_fn + the host's float64 inverse affine
    out = inference.make_predict_fn(model, n, perm, "quarter")(variables, data["crops"])
    xy = codec.boxes_to_image(np.asarray(out["coords"]), data["centers"], data["scales"],
                              tuple(config.data.heatmap_hw))
  assert fresh.wait(timeout=300) == 0
  got = np.load(tmp_path / "out.npz")
  assert list(got["heavy"]) == [""]                       # no flax, no model code
  for b, (kp, mv) in want.items():
    assert got[f"keypoints{b}"].shape == (b, n, 17, 2) and got[f"maxvals{b}"].shape == (b, n, 17)
    # Same StableHLO, same XLA:CPU: bit for bit.
    np.testing.assert_array_equal(got[f"keypoints{b}"], np.asarray(kp))
    np.testing.assert_array_equal(got[f"maxvals{b}"], np.asarray(mv))
  if n == 2:   # versus evaluation: equal joint scores, coordinates within float32 rounding
    np.testing.assert_array_equal(got["maxvals3"], np.asarray(out["maxvals"]))
    np.testing.assert_allclose(got["keypoints3"], xy, atol=1e-3, rtol=0)
  assert os.path.getsize(paths["function"]) < 1 << 20      # variables are not baked in


def test_bundle_files_are_reusable_and_described(load_config, tmp_path):
  config = load_config("hrnet_w32_synthetic_256x192", "quick")
  model, variables, _ = tiny(config, tmp_path / "ckpt")
  out = str(tmp_path / "bundle")
  paths = export.export_bundle(config, model, variables, out, "random", ("cpu", "cuda"))
  manifest = serving.read_manifest(out)
  assert manifest["platforms"] == ["cpu", "cuda"]
  assert manifest["input_hw"] == [128, 96] and manifest["num_instances"] == 2
  assert manifest["variables"]["params"]["final_layer"]["kernel"]["shape"] == [1, 1, 8, 17]
  assert json.loads(open(paths["config"]).read())["eval"]["gamma"] == 0.9
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
  back = checkpoints.load_variables(paths["variables"], abstract)   # eval / init_from read it
  jax.tree.map(np.testing.assert_array_equal, back, variables)
  with pytest.raises(ValueError, match="bundle: export folder exists and is not empty"):
    export.export_bundle(config, model, variables, out)
  with pytest.raises(serving.BundleError, match="ckpt: not an inference bundle"):
    serving.load_bundle(str(tmp_path / "ckpt"))
  config.eval.decode = "dark"
  with pytest.raises(ValueError, match="config.eval.decode must be 'quarter'"):
    export.export_function(model, variables, config, 2)


def test_crop_to_image_is_the_inverse_affine_of_the_heatmap():
  rng = np.random.default_rng(0)
  coords = rng.uniform(0, 32, (4, 2, 17, 2)).astype(np.float32)
  centers = rng.uniform(50, 600, (4, 2)).astype(np.float32)
  scales = rng.uniform(0.2, 3.0, (4, 2)).astype(np.float32)
  got = export.crop_to_image(coords, centers, scales, (32, 24))
  want = codec.boxes_to_image(coords, centers, scales, (32, 24))
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4, rtol=0)


def test_batch_buckets_are_powers_of_two_up_to_the_batch_size():
  assert [serving.batch_bucket(c, 8) for c in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
  assert serving.batch_bucket(5, 6) == 6


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_host_crops_equal_the_evaluation_crops(shared_data, color):
  from mipnet_jax.data import boxes, image, transforms
  coco = shared_data / "coco"
  found, _ = boxes.load_detections(str(coco / "test_coco_det_AP_H_56.json"),
                                   str(coco / "test_coco.json"), str(coco), (128, 96))
  found = [b for b in found if b.image_id == 785][:5]
  rgb = image.read_image(found[0].image_path, "rgb")
  crops, centers, scales = serving.boxes_to_crops(rgb, np.stack([b.box for b in found]),
                                                  (128, 96), color)
  sample = transforms.EvalSample(transforms.CropSpec((128, 96), color))
  for i, box in enumerate(found):
    want = sample.map(box)
    np.testing.assert_array_equal(crops[i], want["image"])
    np.testing.assert_array_equal(centers[i], want["center"])
    np.testing.assert_array_equal(scales[i], want["scale"])
