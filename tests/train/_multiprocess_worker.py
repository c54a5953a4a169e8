"""Test helper, not a test: ``python -m mipnet_jax.main`` that also records what it trained.

    MIPNET_TEST_DUMP=OUT.npz python tests/train/_multiprocess_worker.py --config=... --mode=train \
        --workdir=... --coordinator_address=127.0.0.1:PORT --num_processes=2 --process_id=I

Runs the real entry point (flags, ``jax.distributed.initialize``, ``train.loop``) unchanged, and
wraps two functions so that each process writes to OUT.npz: "loss" (the global loss of every
step this process ran, as it saw it), "step" (the last step), and the final params and
batch_stats as this process holds them ("params['...']", "batch_stats['...']", from its
first local replica; every other local replica is checked to be bit-identical to it).
Used by tests/train/test_distributed.py to check that processes train in lockstep.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import app

from mipnet_jax import main as mipnet_main
from mipnet_jax.train import loop
from mipnet_jax.train import step as train

LOSSES: list[float] = []


def _local_copy(x: jax.Array) -> np.ndarray:
  """This process's copy of a replicated array; all its local replicas must agree."""
  shards = [np.asarray(s.data) for s in x.addressable_shards]
  for s in shards[1:]:
    if not np.array_equal(s, shards[0]):
      raise AssertionError("local replicas of a replicated array differ")
  return shards[0]


def _recording_jit_train_step(*args, **kwargs):
  step_fn = _jit_train_step(*args, **kwargs)

  def step(state, batch):
    state, metrics = step_fn(state, batch)
    LOSSES.append(float(_local_copy(metrics["loss"])))
    return state, metrics

  return step


def _dumping_train_and_evaluate(config, workdir, evaluators=()):
  done = _train_and_evaluate(config, workdir, evaluators)
  state = done.state
  out = {"loss": np.asarray(LOSSES, np.float64), "step": np.int64(done.step),
         "process_index": np.int64(jax.process_index()),
         "local_devices": np.int64(jax.local_device_count()),
         "global_devices": np.int64(jax.device_count())}
  for name in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_flatten_with_path(getattr(state, name))[0]:
      out[name + jax.tree_util.keystr(path)] = _local_copy(leaf)
  np.savez(os.environ["MIPNET_TEST_DUMP"], **out)
  return done


_jit_train_step = train.jit_train_step
_train_and_evaluate = loop.train_and_evaluate
train.jit_train_step = _recording_jit_train_step
loop.train_and_evaluate = _dumping_train_and_evaluate

if __name__ == "__main__":
  app.run(mipnet_main.main)
