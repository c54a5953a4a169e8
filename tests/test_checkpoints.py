"""Checkpoints: model variables (exact round trip, named mismatches, init_from merging) and
training runs (the train-state manager: a damaged newest checkpoint is skipped and set aside,
the data iterator comes back, SIGTERM is recorded as a preemption)."""

from __future__ import annotations

import logging
import os
import pathlib
import signal

import grain
import jax
import numpy as np
import pytest

from mipnet_jax import checkpoints, experiments
from mipnet_jax.models.variables import abstract_variables

HW = (64, 64)


def flat(tree) -> dict:
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


# --- model variables ------------------------------------------------------------------------

def test_round_trip_and_mismatch(tmp_path, tiny_model):
  mip, v = tiny_model("simple_baseline", n=2, image_hw=HW)
  path = checkpoints.save_variables(str(tmp_path / "ck"), v)
  assert path == str(tmp_path / "ck")
  back = checkpoints.load_variables(path, abstract_variables(mip, HW))
  assert back.keys() == {"params", "batch_stats"}
  got, want = flat(back), flat(v)
  assert got.keys() == want.keys()
  for k in want:
    assert got[k].dtype == want[k].dtype
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  baseline, _ = tiny_model("simple_baseline", n=1, image_hw=HW)   # MIPNet weights: MIMBs unexpected
  with pytest.raises(checkpoints.CheckpointError,
                     match=rf"^{path}: checkpoint does not fit the model: unexpected "
                           r"\[\"\['batch_stats'\]\['layer3_mimb'\]\['branch0'\]\['embed_bn'\]"
                           r"\['mean'\]\", .* \.\.\.$"):
    checkpoints.load_variables(path, abstract_variables(baseline, HW))
  with pytest.raises(checkpoints.CheckpointError, match="checkpoint directory not found"):
    checkpoints.load_variables(str(tmp_path / "nothing"), abstract_variables(mip, HW))
  (tmp_path / "empty").mkdir()                  # an empty folder holds none of the arrays
  with pytest.raises(checkpoints.CheckpointError, match=r"empty: checkpoint does not fit the "
                     r"model: missing \[\"\['batch_stats'\]\['deconv'\]\['bn0'\]\['mean'\]"):
    checkpoints.load_variables(str(tmp_path / "empty"), abstract_variables(mip, HW))


def test_load_into_starts_the_mimbs_fresh_from_a_baseline(tmp_path, tiny_model):
  """A baseline (N=1) checkpoint initialises MIPNet (N=2): every shared array comes from
  the checkpoint, exactly the MIMB arrays stay fresh."""
  _, base = tiny_model("hrnet", n=1, image_hw=HW, seed=5)
  _, fresh = tiny_model("hrnet", n=2, image_hw=HW, seed=6)
  path = checkpoints.save_variables(str(tmp_path / "baseline"), base)
  merged, fresh_names = checkpoints.load_into(path, fresh)
  base_f, fresh_f, merged_f = flat(base), flat(fresh), flat(merged)
  assert set(merged_f) == set(fresh_f)
  mimb = sorted(k for k in fresh_f if "_mimb'" in k)
  assert mimb and fresh_names == mimb
  assert set(fresh_f) - set(base_f) == set(mimb)
  for name, value in merged_f.items():
    np.testing.assert_array_equal(value, fresh_f[name] if name in mimb else base_f[name],
                                  err_msg=name)


def test_load_into_rejects_mismatched_shapes_and_unknown_names(tmp_path, tiny_model):
  _, fresh = tiny_model("hrnet", n=1, image_hw=HW, seed=6)
  _, k14 = tiny_model("hrnet", n=1, image_hw=HW, num_keypoints=14)   # CrowdPose's 14 joints
  path = checkpoints.save_variables(str(tmp_path / "k14"), k14)
  with pytest.raises(checkpoints.CheckpointError, match=r"shape mismatch.*final_layer"):
    checkpoints.load_into(path, fresh)
  _, mip = tiny_model("hrnet", n=2, image_hw=HW)
  mip_path = checkpoints.save_variables(str(tmp_path / "mip"), mip)
  with pytest.raises(checkpoints.CheckpointError, match=r"unexpected.*_mimb"):
    checkpoints.load_into(mip_path, fresh)
  with pytest.raises(checkpoints.CheckpointError, match=r"gone: init_from checkpoint directory "
                     r"not found"):
    checkpoints.load_into(str(tmp_path / "gone"), fresh)


# --- training runs ---------------------------------------------------------------------------

def _config():
  return experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick")


def _tiny_state(value: float) -> dict:
  return {"w": np.full((3, 4), value, np.float32), "step": np.int32(value)}


def _iterator():
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  next(it)
  return it


def _abstract():
  return jax.eval_shape(lambda: _tiny_state(0.0))


def _truncate_data(state_dir: pathlib.Path) -> None:
  files = [p for p in state_dir.rglob("*") if p.is_file() and "/d/" in str(p)]
  assert files, f"no data files under {state_dir}"
  for p in files:
    with open(p, "r+b") as f:
      f.truncate(os.path.getsize(p) // 2)


def _drop_manifest(state_dir: pathlib.Path) -> None:
  os.remove(state_dir / "manifest.ocdbt")


@pytest.mark.parametrize("damage", [_truncate_data, _drop_manifest],
                         ids=["truncated", "half_written"])
def test_restore_skips_and_sets_aside_an_unreadable_newest_checkpoint(tmp_path, caplog, damage):
  config = _config()
  mngr = checkpoints.train_state_manager(str(tmp_path / "run"), keep=3, async_save=False)
  for step in (2, 4):
    checkpoints.save_train_state(mngr, step, _tiny_state(step), _iterator(), config)
  mngr.wait_until_finished()
  assert mngr.all_steps() == [2, 4]
  ckdir = tmp_path / "run" / "checkpoints"
  damage(ckdir / "4" / "state")

  caplog.set_level(logging.WARNING)
  state, step = checkpoints.restore_newest_readable(mngr, _abstract(), _iterator())
  assert step == 2
  np.testing.assert_array_equal(state["w"], np.full((3, 4), 2.0, np.float32))
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("checkpoint 4" in m and "unreadable" in m for m in warnings), warnings
  # Set aside for inspection, no longer listed.
  assert sorted(p.name for p in ckdir.iterdir()) == ["2", "4.unreadable"]
  assert mngr.all_steps() == [2]

  # The resumed run reaches step 4 again and must be able to checkpoint it (orbax refuses a
  # step that exists and skips periodic saves at or below its newest step).
  checkpoints.save_train_state(mngr, 4, _tiny_state(40), _iterator(), config)
  mngr.wait_until_finished()
  assert 4 in mngr.all_steps()
  state, step = checkpoints.restore_newest_readable(mngr, _abstract(), _iterator())
  assert step == 4 and float(state["w"][0, 0]) == 40.0
  # A second damaged step 4 is set aside beside the first.
  damage(ckdir / "4" / "state")
  assert checkpoints.restore_newest_readable(mngr, _abstract(), _iterator())[1] == 2
  assert sorted(p.name for p in ckdir.iterdir()) == ["2", "4.unreadable", "4.unreadable-1"]
  mngr.close()


def test_restore_without_checkpoints_starts_fresh(tmp_path):
  mngr = checkpoints.train_state_manager(str(tmp_path / "run"), keep=3)
  assert checkpoints.restore_newest_readable(mngr, _abstract(), _iterator()) == (None, 0)
  mngr.close()


def test_restore_brings_back_the_data_iterator_and_keeps_the_newest(tmp_path):
  config = _config()
  mngr = checkpoints.train_state_manager(str(tmp_path / "run"), keep=2)
  it = _iterator()
  for _ in range(5):
    next(it)                                   # 6 elements consumed in all
  for step in (2, 4, 6):
    checkpoints.save_train_state(mngr, step, _tiny_state(step), it, config, force=True)
  mngr.wait_until_finished()
  assert mngr.all_steps() == [4, 6]            # keep=2
  expected = [next(it) for _ in range(3)]
  fresh = _iterator()
  state, step = checkpoints.restore_newest_readable(mngr, _abstract(), fresh)
  assert step == 6 and int(state["step"]) == 6
  assert [next(fresh) for _ in range(3)] == expected == [6, 7, 8]
  mngr.close()
  # The config rides along; variables load from the run (its newest step's state).
  assert checkpoints.training_checkpoint(str(tmp_path / "run")) == str(
      tmp_path / "run" / "checkpoints" / "6" / "state")
  assert checkpoints.training_checkpoint(str(tmp_path / "run" / "checkpoints" / "4")) == str(
      tmp_path / "run" / "checkpoints" / "4" / "state")
  assert checkpoints.training_checkpoint(str(tmp_path)) is None


def test_preemption_records_sigterm_and_restores_the_handler():
  seen = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
  try:
    preempt = checkpoints.Preemption()
    assert not preempt.requested and not preempt.any_process()
    os.kill(os.getpid(), signal.SIGTERM)       # delivered to the main thread, here
    assert preempt.requested and preempt.any_process()
    assert seen == []                          # recorded, not passed on: the process lives
    preempt.restore()
    os.kill(os.getpid(), signal.SIGTERM)       # the handler before it is back
    assert seen == [signal.SIGTERM]
  finally:
    signal.signal(signal.SIGTERM, previous)
