"""Model-variables checkpoints (orbax): {'params', 'batch_stats'} of a pose network.

``save_variables`` writes a standalone checkpoint directory; ``load_variables`` reads one into
the structure of a given model (shapes and dtypes checked), so evaluation, export and
``init_from`` share one format.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


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
