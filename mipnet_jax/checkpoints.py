"""Checkpoints (orbax): model variables and the training run's state.

Model variables, {'params', 'batch_stats'} of a pose network: ``save_variables`` writes a
standalone checkpoint directory; ``load_variables`` reads one (or a training run's newest
step) into the structure of a given model (shapes and dtypes checked), so evaluation, export
and ``init_from`` share one format; ``load_into`` merges a checkpoint into fresh variables.

Training runs, WORKDIR/checkpoints/<step>/ with the whole train state, the grain iterator of
every process and the config: ``train_state_manager`` writes them (asynchronously, keeping
the newest few), ``save_train_state`` saves one, ``restore_newest_readable`` resumes from the
newest readable one (an unreadable one is set aside) and ``Preemption`` turns SIGTERM into a
save between steps.
"""

from __future__ import annotations

import json
import os
import signal

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils


class CheckpointError(ValueError):
  """A checkpoint that cannot be used; the message names the path and the problem."""


def save_variables(path: str, variables: dict) -> str:
  """Writes {'params', 'batch_stats'} to the new directory ``path``; returns its path."""
  path = os.path.abspath(path)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, {k: variables[k] for k in ("params", "batch_stats")})
    ckptr.wait_until_finished()
  return path


def training_checkpoint(path: str) -> str | None:
  """The ``state`` item of a training checkpoint that ``path`` names: a run's workdir (its
  newest checkpoint), its ``checkpoints`` folder, or one ``checkpoints/<step>``; else None."""
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  steps = [int(d) for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
  if steps:
    path = os.path.join(path, str(max(steps)))
  state = os.path.join(path, "state")
  return state if os.path.isdir(state) else None


def load_variables(path: str, abstract: dict) -> dict:
  """Reads the model variables shaped like ``abstract`` (e.g. ``jax.eval_shape`` of the
  model's init) from a ``save_variables`` checkpoint or from a training run (workdir, its
  checkpoints folder or one step: the newest step's params and batch_stats). A missing path
  or a mismatched structure raises CheckpointError."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: checkpoint directory not found")
  target = {k: abstract[k] for k in ("params", "batch_stats")}
  state = training_checkpoint(path)
  if state is not None:
    with ocp.StandardCheckpointer() as ckptr:
      stored = ckptr.restore(state)
    stored = {k: stored[k] for k in target if k in stored}
    _check_structure(state, _tree_shapes(stored), _tree_shapes(target))
    return stored
  with ocp.StandardCheckpointer() as ckptr:
    try:
      stored = ckptr.metadata(path)
    except (FileNotFoundError, ValueError) as e:
      raise CheckpointError(f"{path}: not a model-variables checkpoint ({e})") from None
    _check_structure(path, _tree_shapes(stored), _tree_shapes(target))
    return ckptr.restore(path, jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target))


def _tree_shapes(tree) -> dict[str, tuple]:
  tree = getattr(tree, "item_metadata", tree)
  tree = getattr(tree, "tree", tree)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in flat}


def _check_structure(path: str, stored: dict, wanted: dict) -> None:
  missing = sorted(set(wanted) - set(stored))
  extra = sorted(set(stored) - set(wanted))
  shapes = sorted(k for k in set(wanted) & set(stored) if wanted[k] != stored[k])
  if missing or extra or shapes:
    parts = [f"{name} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
             for name, keys in (("missing", missing), ("unexpected", extra),
                                ("shape mismatch", shapes)) if keys]
    raise CheckpointError(f"{path}: checkpoint does not fit the model: " + "; ".join(parts))


def load_into(path: str, fresh: dict) -> tuple[dict, list[str]]:
  """Initialises from a variables checkpoint or a training run (``init_from``): every stored
  array replaces the fresh one of the same name; names the checkpoint lacks (e.g. the MIMBs when a trained
  baseline starts MIPNet, as the authors fine-tune) stay fresh and are returned. Stored names
  the model lacks, or shapes that differ, raise CheckpointError."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: init_from checkpoint directory not found")
  wanted = {k: fresh[k] for k in ("params", "batch_stats")}
  state = training_checkpoint(path)          # a training run: its newest step's variables
  with ocp.StandardCheckpointer() as ckptr:
    stored = ckptr.restore(state or path)
  stored = {k: stored[k] for k in wanted if k in stored}
  have, want = _tree_shapes(stored), _tree_shapes(wanted)
  # Names the checkpoint lacks may stay fresh; unknown names and other shapes may not.
  _check_structure(path, have, {k: v for k, v in want.items() if k in have})
  flat_stored = dict(jax.tree_util.tree_flatten_with_path(stored)[0])
  flat_stored = {jax.tree_util.keystr(k): v for k, v in flat_stored.items()}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(wanted)
  merged = [flat_stored.get(jax.tree_util.keystr(k), v) for k, v in leaves]
  fresh_names = sorted(jax.tree_util.keystr(k) for k, _ in leaves
                       if jax.tree_util.keystr(k) not in flat_stored)
  return jax.tree_util.tree_unflatten(treedef, merged), fresh_names


# ------------------------------------------------------------------ training-run checkpoints


class Preemption:
  """Records SIGTERM (a preemption notice) so the loop can save and stop between steps."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint and stopping after this step")
    self.requested = True

  def any_process(self) -> bool:
    """True when SIGTERM reached any process (all processes agree)."""
    return not _all_processes(not self.requested)

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def train_state_manager(workdir: str, keep: int, async_save: bool = True
                        ) -> ocp.CheckpointManager:
  """The manager of WORKDIR/checkpoints, keeping the newest ``keep`` steps."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save_train_state(mngr: ocp.CheckpointManager, step: int, state, iterator, config,
                     force: bool = False) -> None:
  """Saves the train state, this process's grain ``iterator`` and the ``config`` at ``step``."""
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
      config=ocp.args.JsonSave(json.loads(config.to_json()))), force=force)


def restore_newest_readable(mngr: ocp.CheckpointManager, abstract_state, iterator):
  """The newest readable checkpoint -> (state, step), or (None, 0) when there is none; the
  grain ``iterator`` is restored in place. A checkpoint that fails to restore (truncated,
  half written) on any process is skipped with a warning and renamed to
  ``<step>.unreadable`` (kept for inspection): orbax would otherwise still count it, refuse
  to save that step again and skip periodic saves up to it."""
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=grain.checkpoint.CheckpointRestore(iterator)))
      error = None
    except Exception as e:      # noqa: BLE001  (orbax raises many kinds for broken files)
      error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else repr(e)
    if _all_processes(error is None):
      return restored["state"], step
    logging.warning("checkpoint %d in %s is unreadable (%s); trying the previous one", step,
                    mngr.directory, error or "on another process")
    _set_aside(mngr, step)
  return None, 0


def _all_processes(ok: bool) -> bool:
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.array([ok]))))


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> None:
  """Renames checkpoint ``step`` (process 0) so that orbax no longer lists it."""
  path = os.path.join(os.fspath(mngr.directory), str(step))
  if jax.process_index() == 0 and os.path.isdir(path):
    target, n = f"{path}.unreadable", 1
    while os.path.exists(target):
      target, n = f"{path}.unreadable-{n}", n + 1
    os.rename(path, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  mngr.reload()
