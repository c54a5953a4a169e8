"""Shared test fixtures: the read-only sample data in ../shared/data (or $MIPNET_SHARED_DATA)."""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# One persistent XLA compilation cache per session, shared by the xdist workers and every
# subprocess the tests start (the CLI, the scripts, the notebook and the multi-process runs
# compile the same quick programs again and again). A key covers the program, the flags and
# the devices, so a hit is the same executable. Made by the controlling process before the
# workers start (they inherit the variable), removed at its exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _XLA_CACHE = tempfile.mkdtemp(prefix="mipnet_jax_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
  atexit.register(shutil.rmtree, _XLA_CACHE, True)


def shared_data_dir() -> pathlib.Path:
  env = os.environ.get("MIPNET_SHARED_DATA")
  return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  path = shared_data_dir()
  if not path.is_dir():
    pytest.skip(f"shared sample data not found at {path} (set MIPNET_SHARED_DATA to the "
                "shared/data folder)")
  return path


def load_module(path: pathlib.Path, name: str):
  """Imports the Python file ``path`` (a script or config) as module ``name``."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_script(name: str):
  """scripts/<name>.py as a module (the reference re-implementations used as oracles)."""
  return load_module(REPO_ROOT / "scripts" / f"{name}.py", name)


@pytest.fixture(scope="session")
def load_config():
  """Loads configs/<name>.py[:arg] the way ml_collections' config flags do."""

  def load(name: str, arg: str | None = None):
    return load_module(REPO_ROOT / "configs" / f"{name}.py", f"_config_{name}").get_config(arg)

  return load


def pycocotools_stats(gt_path: str, results, sigmas=None, area_factor=None) -> list[float]:
  """The 10 COCO keypoint stats (AP, AP50, ..., ARL) of ``results`` (a results file or list)
  run directly with pycocotools, the independent path the evaluation is checked against;
  ``sigmas`` replaces pycocotools' default (COCO) OKS sigmas; ``area_factor`` sets every GT
  area to that factor x box w x h (the OCPose / CrowdPose OKS scale, 0.53)."""
  import contextlib
  import io
  import json

  import numpy as np
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval

  with contextlib.redirect_stdout(io.StringIO()):
    if area_factor is None:
      gt = COCO(gt_path)
    else:
      with open(gt_path) as f:
        data = json.load(f)
      for ann in data["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3] * area_factor
      gt = COCO()
      gt.dataset = data
      gt.createIndex()
    coco_eval = COCOeval(gt, gt.loadRes(results), "keypoints")
    coco_eval.params.useSegm = None
    if sigmas is not None:
      coco_eval.params.kpt_oks_sigmas = np.array(sigmas)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
  return [float(v) for v in coco_eval.stats]


def pycocotools_limb_sigmas() -> list[float]:
  """pycocotools' own COCO sigmas of the 12 limb joints (shoulders .. ankles, COCO ids 5-16)."""
  from pycocotools.cocoeval import Params
  return [float(s) for s in Params(iouType="keypoints").kpt_oks_sigmas[5:]]


def load_oracle(name: str):
  """tests/oracles/<name>.py: an independent re-implementation used as a test oracle (the
  official HRNet sample path, the reference post-processing loop, the PyTorch models)."""
  return load_module(REPO_ROOT / "tests" / "oracles" / f"{name}.py", name)


# --- the one tiny model fixture ------------------------------------------------------------

def random_variables(model, image_hw: tuple[int, int], seed: int = 0) -> dict:
  """``models.variables.random_variables`` (imported on use: conftest imports no JAX)."""
  from mipnet_jax.models.variables import random_variables as make
  return make(model, image_hw, seed)


def assert_trees_equal(a, b) -> None:
  """Two pytrees (variables, train states) hold the same leaves under the same paths, bit for
  bit."""
  import jax
  import numpy as np
  leaves_a, leaves_b = (jax.tree_util.tree_leaves_with_path(t) for t in (a, b))
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b], "tree structures differ"
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))


def conditioned_variables(model, variables: dict, images, num_instances: int,
                          residual_gain: float = 0.1) -> dict:
  """``variables`` conditioned like a trained network's, for comparing two float32 runtimes.

  ``random_variables`` alone gives networks so ill-conditioned that a 1e-7 relative change
  of the input moves the tiny SimpleBaseline's heatmaps by 3.8e-4 of their std (JAX against
  itself), so no second implementation can match it to 1e-4. Here, as in trained ResNets,
  each residual branch's last BatchNorm scale is multiplied by ``residual_gain`` (bn3 of a
  Bottleneck, bn2 of a BasicBlock), and every BatchNorm's running statistics become the
  batch statistics of ``images`` [B, H, W, 3] (one train-mode pass, solved back from the
  momentum update), so activations stay O(1). Measured: the same perturbation then moves the
  heatmaps by 1.1e-5 (SimpleBaseline) and 5e-6 (HRNet) of their std."""
  import jax

  def damp(tree):
    if not isinstance(tree, dict):
      return tree
    tree = {k: damp(v) for k, v in tree.items()}
    if {"conv1", "bn1", "conv2", "bn2"} <= set(tree):
      last = "bn3" if "conv3" in tree else "bn2"
      tree[last] = dict(tree[last], scale=tree[last]["scale"] * residual_gain)
    return tree

  variables = dict(variables, params=damp(variables["params"]))
  _, updated = model.apply(variables, images, num_instances, train=True,
                           method=model.instances, mutable=["batch_stats"])
  m = 0.9                                                # layers.BatchNorm's momentum
  stats = jax.tree.map(lambda new, old: (new - m * old) / (1 - m), updated["batch_stats"],
                       variables["batch_stats"])
  return dict(variables, batch_stats=stats)


TINY_ARCHS = {  # the `:quick` widths of experiments.QUICK_ARCHS, smallest topologies
    "hrnet": dict(name="hrnet", width=8, stage_modules=(1, 1, 1), num_blocks=1, stem_width=16),
    "simple_baseline": dict(name="simple_baseline", depth=50, base_width=8,
                            deconv_features=(16, 16, 16)),
    "vitpose": dict(name="vitpose", embed_dim=32, depth=4, num_heads=2,
                    deconv_features=(16, 16)),
}


@pytest.fixture(scope="session")
def tiny_model():
  """``tiny_model(arch="hrnet", n=2, image_hw=(64, 64), seed=0, **model_fields)`` ->
  (model, variables): a `:quick`-width network with ``random_variables``, cached per
  arguments for the session (the one tiny model of the suite)."""
  from mipnet_jax.models.build import build_model

  cache = {}

  def make(arch: str = "hrnet", n: int = 2, image_hw=(64, 64), seed: int = 0, **fields):
    key = (arch, n, tuple(image_hw), seed, tuple(sorted(fields.items())))
    if key not in cache:
      cfg = dict(TINY_ARCHS[arch], num_keypoints=17, mimb_slots=(False, False, True, True),
                 mimb_reduce=1, mimb_only_embed=False, lambda_code="one_hot", dtype="float32")
      cfg.update(fields)
      model = build_model(cfg, n)
      cache[key] = (model, random_variables(model, image_hw, seed))
    return cache[key]

  return make


def tiny_checkpoint(config, path) -> tuple:
  """(model, variables, checkpoint folder) for ``config``'s model at the evaluated N, with
  ``random_variables`` saved at ``path`` (so loading it compiles no initialiser)."""
  from mipnet_jax import checkpoints
  from mipnet_jax.eval.protocol import evaluated_n
  from mipnet_jax.models.build import build_model

  model = build_model(config.model, evaluated_n(config))
  variables = random_variables(model, tuple(config.data.image_hw))
  return model, variables, checkpoints.save_variables(str(path), variables)


# --- serving: one tiny model with its exported bundle, shared by the serve tests -----------

@pytest.fixture(scope="session")
def served_model(load_config, tmp_path_factory):
  """(config, checkpoint folder, bundle folder) of the synthetic `:quick` N=2 model with
  ``random_variables``, exported once for the session (with model.onnx when the onnx
  package is installed)."""
  import importlib.util

  from mipnet_jax.serve import export

  config = load_config("hrnet_w32_synthetic_256x192", "quick")
  folder = tmp_path_factory.mktemp("served_model")
  model, variables, checkpoint = tiny_checkpoint(config, folder / "ckpt")
  export.export_bundle(config, model, variables, str(folder / "bundle"), "random",
                       with_onnx=importlib.util.find_spec("onnx") is not None)
  return config, checkpoint, str(folder / "bundle")


@pytest.fixture(scope="session")
def predictor(served_model):
  """``Predictor.from_config`` of ``served_model``."""
  from mipnet_jax.serve.predictor import Predictor

  config, checkpoint, _ = served_model
  return Predictor.from_config(config, checkpoint)


@pytest.fixture
def coco(shared_data):
  """The shared COCO sample folder (images, annotations, detection boxes)."""
  root = shared_data / "coco"
  names = ("test_coco.json", "test_coco_det_AP_H_56.json")
  if not all((root / n).is_file() for n in names):
    pytest.skip(f"{root} lacks {names} (the shared COCO sample)")
  return root


# --- the quick COCO config on the shared COCO sample ---------------------------------------

COCO_SAMPLE_DETS = "test_coco_det_AP_H_56.json"


def coco_sample_config(load_config, shared_data):
  """``hrnet_w32_coco_256x192:quick`` whose coco_val split is the shared COCO sample (its
  annotations, images and detection file)."""
  c = load_config("hrnet_w32_coco_256x192", "quick")
  c.data.root = str(shared_data / "coco")
  c.eval_data.coco_val.update(ann="test_coco.json", images=".", det_file=COCO_SAMPLE_DETS)
  return c


@pytest.fixture
def coco_config(load_config, shared_data):
  """A fresh ``coco_sample_config`` per test (tests change it)."""
  return coco_sample_config(load_config, shared_data)
