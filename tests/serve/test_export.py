"""``--mode=export``: the bundle's files are reusable and described, the serving function is the
predict step's image-joints function, ``run_export``'s typed result, and the one-line errors
(a non-empty folder, device decoding only)."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import tiny_checkpoint
from mipnet_jax import checkpoints
from mipnet_jax.core.meta import get_meta
from mipnet_jax.eval import predict_step
from mipnet_jax.serve import bundle, export

CONFIG = "hrnet_w32_synthetic_256x192"


def test_bundle_files_are_reusable_and_described(load_config, tmp_path):
  config = load_config(CONFIG, "quick")
  model, variables, _ = tiny_checkpoint(config, tmp_path / "ckpt")
  out = str(tmp_path / "bundle")
  paths = export.export_bundle(config, model, variables, out, "random", ("cpu", "cuda"))
  assert paths == {k: os.path.join(out, name) for k, name in (
      ("function", "predict.jax"), ("variables", "variables"), ("manifest", "bundle.json"),
      ("config", "config.json"))}
  manifest = bundle.read_manifest(out)
  assert manifest["platforms"] == ["cpu", "cuda"]
  assert (manifest["format"], manifest["version"]) == ("mipnet_jax.bundle", 1)
  assert manifest["input_hw"] == [128, 96] and manifest["heatmap_hw"] == [32, 24]
  assert (manifest["num_instances"], manifest["num_keypoints"]) == (2, 17)
  assert (manifest["color"], manifest["flip"], manifest["decode"]) == ("rgb", True, "quarter")
  assert (manifest["box_padding"], manifest["batch_size"]) == (1.25, 64)
  assert (manifest["weights"], manifest["architecture"]) == ("random", "hrnet")
  assert manifest["variables"]["params"]["final_layer"]["kernel"] == {
      "shape": [1, 1, 8, 17], "dtype": "float32"}
  assert json.loads(open(paths["config"]).read()) == json.loads(config.to_json())
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), variables)
  back = checkpoints.load_variables(paths["variables"], abstract)   # eval / init_from read it
  jax.tree.map(np.testing.assert_array_equal, back, variables)
  assert os.path.getsize(paths["function"]) < 1 << 20      # variables are not baked in
  with pytest.raises(ValueError, match="bundle: export folder exists and is not empty"):
    export.export_bundle(config, model, variables, out)


def test_serving_function_is_the_image_joints_function(load_config, tiny_model):
  config = load_config(CONFIG, "quick")
  model, variables = tiny_model(n=2, image_hw=(128, 96))
  rng = np.random.default_rng(0)
  args = (rng.integers(0, 256, (2, 128, 96, 3), np.uint8),
          rng.uniform(50, 200, (2, 2)).astype(np.float32),
          rng.uniform(0.5, 2, (2, 2)).astype(np.float32))
  got = jax.jit(export.serving_function(config, model, 2))(variables, *args)
  perm = get_meta("synthetic").flip_permutation
  want = jax.jit(predict_step.image_joints_fn(model, 2, perm, (32, 24)))(variables, *args)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  config.eval.flip = False                                   # no flip test: no permutation
  got = jax.jit(export.serving_function(config, model, 2))(variables, *args)
  want = jax.jit(predict_step.image_joints_fn(model, 2, None, (32, 24)))(variables, *args)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_only_device_decoding_exports(load_config, tiny_model):
  config = load_config(CONFIG, "quick")
  config.eval.decode = "dark"
  model, variables = tiny_model(n=2, image_hw=(128, 96))
  message = ("export and predict decode on the device: config.eval.decode must be 'quarter', "
             "got 'dark' (DARK needs the heatmaps on the host)")
  for call in (lambda: export.export_function(model, variables, config, 2),
               lambda: export.run_export(config, None, "/nonexistent/never_written")):
    with pytest.raises(ValueError) as info:
      call()
    assert str(info.value) == message


def test_run_export_result(load_config, tmp_path):
  config = load_config(CONFIG, "quick")
  _, _, checkpoint = tiny_checkpoint(config, tmp_path / "ckpt")
  config.eval.checkpoint = checkpoint
  with pytest.raises(ValueError, match="--mode=export writes under --export_dir or "
                                       "WORKDIR/export: pass one"):
    export.run_export(config, None)
  done = export.run_export(config, str(tmp_path / "work"))
  folder = str(tmp_path / "work" / "export")
  assert done.paths["manifest"] == os.path.join(folder, "bundle.json")
  assert (done.weights, done.platforms) == (checkpoint, ("cpu",))
  assert done.function_bytes == os.path.getsize(os.path.join(folder, "predict.jax"))
  assert bundle.read_manifest(folder)["weights"] == checkpoint
  assert json.loads(done.summary()) == {"bundle": folder, "weights": checkpoint,
                                        "platforms": ["cpu"],
                                        "function_bytes": done.function_bytes, "onnx_bytes": 0}
  assert bundle.read_manifest(folder)["onnx"] is None and "onnx" not in done.paths


def test_export_result_summary_is_one_json_line():
  result = export.ExportResult(
      {"function": "/b/predict.jax", "variables": "/b/variables", "manifest": "/b/bundle.json",
       "config": "/b/config.json"}, "runs/x/checkpoints/7", ("cpu", "cuda"), 170_000, 9_000)
  assert result.summary() == ('{"bundle": "/b", "weights": "runs/x/checkpoints/7", '
                              '"platforms": ["cpu", "cuda"], "function_bytes": 170000, '
                              '"onnx_bytes": 9000}')


def test_udp_models_carry_their_geometry_and_refuse_onnx(load_config, tiny_model, tmp_path):
  """A UDP model exports (UDP-DARK decodes on the device) with "udp" and its decoding in the
  manifest; --export_onnx refuses it before anything is written or loaded."""
  config = load_config(CONFIG, "quick")
  config.data.udp = True
  config.eval.decode = "dark"                      # HRNet's choice; UDP decodes UDP-DARK
  export.require_device_decode(config)
  model, variables = tiny_model(n=2, image_hw=(128, 96))
  manifest = export.make_manifest(config, variables, 2, "w", ())
  assert (manifest["udp"], manifest["decode"]) == (True, "udp_dark")
  message = (f"{config.experiment}: --export_onnx supports HRNet's geometry only; this model "
             f"uses UDP (config.data.udp=True), whose UDP-DARK decoding the ONNX graph does "
             f"not implement (export without --export_onnx)")
  for call in (lambda: export.export_bundle(config, model, variables, str(tmp_path / "b"),
                                            with_onnx=True),
               lambda: export.run_export(config, None, str(tmp_path / "c"), with_onnx=True)):
    with pytest.raises(ValueError) as info:
      call()
    assert str(info.value) == message
  assert not os.listdir(tmp_path)
  config.data.udp = False
  assert export.make_manifest(config, variables, 2, "w", ())["udp"] is False
