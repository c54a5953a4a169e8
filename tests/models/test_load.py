"""Where a model's weights come from: resolve_checkpoint's three rules, fresh weights (the
config's seed), a variables checkpoint or a training run's newest step loaded exactly, and a
checkpoint that does not fit named by its path."""

from __future__ import annotations

import os

import grain
import jax
import numpy as np
import pytest
from conftest import tiny_checkpoint

from mipnet_jax import checkpoints, experiments
from mipnet_jax.models import load
from mipnet_jax.models import variables as model_variables
from mipnet_jax.models.build import build_model

# One worker runs this module, so its module fixture runs once (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("load")

HW = (64, 64)


def quick_config(seed: int = 0):
  """The quick HRNet MIPNet (N=2) at 64x64."""
  c = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")
  c.data.update(image_hw=HW, heatmap_hw=(16, 16))
  c.seed = seed
  return c


def flat(tree) -> dict:
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same(got, want):
  got, want = flat(got), flat(want)
  assert got.keys() == want.keys() and len(want) > 50
  for k in want:
    assert got[k].dtype == want[k].dtype, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def save_training_run(workdir, variables, steps=(3, 5)) -> None:
  """A training run's checkpoints (train_state_manager's layout) holding ``variables`` + step
  as its train state."""
  config = quick_config()
  mngr = checkpoints.train_state_manager(str(workdir), keep=3, async_save=False)
  for step in steps:
    it = iter(grain.MapDataset.range(10).to_iter_dataset())
    state = dict(jax.tree.map(lambda x, s=step: np.asarray(x) + s, variables), step=step)
    checkpoints.save_train_state(mngr, step, state, it, config, force=True)
  mngr.wait_until_finished()
  mngr.close()


def test_resolve_checkpoint_rules(tmp_path, tiny_model):
  config = quick_config()
  run = tmp_path / "run"
  _, variables = tiny_model("hrnet", image_hw=HW)
  save_training_run(run, variables)
  empty = tmp_path / "empty"
  empty.mkdir()
  # 1. config.eval.checkpoint wins, even over a workdir holding a training checkpoint.
  config.eval.checkpoint = "/somewhere/ckpt"
  assert load.resolve_checkpoint(config, str(run)) == "/somewhere/ckpt"
  assert load.resolve_checkpoint(config, None) == "/somewhere/ckpt"
  # 2. Else a workdir holding a training checkpoint: the workdir itself.
  config.eval.checkpoint = ""
  assert load.resolve_checkpoint(config, str(run)) == str(run)
  # 3. Else fresh weights.
  for workdir in (str(empty), str(tmp_path / "missing"), None, ""):
    assert load.resolve_checkpoint(config, workdir) == ""
  (empty / "checkpoints").mkdir()              # a checkpoints folder without any step
  assert load.resolve_checkpoint(config, str(empty)) == ""


@pytest.fixture(scope="module")
def fresh_reference():
  """init_variables of the quick model with the config's seed (7), computed once (eagerly,
  as load_model does: ~10 s on 2 cores the first time, cached per op afterwards)."""
  config = quick_config(seed=7)
  model = build_model(config.model, 2)
  return config, model, model_variables.init_variables(model, HW, jax.random.key(7))


def test_no_checkpoint_gives_fresh_weights_of_the_config_seed(fresh_reference):
  config, model, reference = fresh_reference
  loaded = load.load_model(config, 2, "")
  assert loaded.weights == load.FRESH == "freshly initialised (no checkpoint)"
  assert loaded.model == model and loaded.model.lambda_dim == 2
  assert_same(loaded.variables, reference)
  other = flat(model_variables.init_variables(model, HW, jax.random.key(8)))   # the seed matters
  kernels = [k for k in other if k.endswith("['kernel']")]
  assert kernels and not any(np.array_equal(other[k], flat(reference)[k]) for k in kernels)


def test_fresh_variables_equal_init_variables(fresh_reference):
  _, model, reference = fresh_reference
  fresh = model_variables.fresh_variables(model, HW, jax.random.key(7))
  assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(fresh))    # on the host
  assert_same(fresh, reference)
  abstract = model_variables.abstract_variables(model, HW)
  assert jax.tree.map(lambda x: (x.shape, x.dtype), abstract) == jax.tree.map(
      lambda x: (x.shape, x.dtype), reference)


def test_a_variables_checkpoint_loads_exactly(tmp_path):
  config = quick_config()
  model, variables, path = tiny_checkpoint(config, tmp_path / "ckpt")
  loaded = load.load_model(config, 2, path)
  assert loaded.weights == path == str(tmp_path / "ckpt")
  assert loaded.model == model
  assert_same(loaded.variables, variables)


def test_a_training_run_loads_its_newest_step(tmp_path, tiny_model):
  config = quick_config()
  _, variables = tiny_model("hrnet", image_hw=HW)
  model = build_model(config.model, 2)
  assert jax.tree.map(np.shape, variables) == jax.tree.map(
      np.shape, model_variables.abstract_variables(model, HW))       # the quick model is conftest's tiny one
  save_training_run(tmp_path / "run", variables)
  loaded = load.load_model(config, 2, load.resolve_checkpoint(config, str(tmp_path / "run")))
  assert loaded.weights == str(tmp_path / "run" / "checkpoints" / "5")
  assert_same(loaded.variables, jax.tree.map(lambda x: np.asarray(x) + 5, variables))


def test_a_checkpoint_that_does_not_fit_names_its_path(tmp_path):
  config = quick_config()
  _, _, path = tiny_checkpoint(config, tmp_path / "mipnet")     # N=2: with MIMBs
  with pytest.raises(checkpoints.CheckpointError) as err:
    load.load_model(config, 1, path)                            # the baseline has none
  assert str(err.value).startswith(f"{path}: checkpoint does not fit the model: unexpected")
  assert "_mimb" in str(err.value)
  with pytest.raises(checkpoints.CheckpointError, match=rf"^{tmp_path}/gone: checkpoint "
                     "directory not found$"):
    load.load_model(config, 2, str(tmp_path / "gone"))
  assert os.path.isdir(path)
