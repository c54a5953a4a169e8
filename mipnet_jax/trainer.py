"""The training loop: sharded steps, orbax checkpoints with exact resume, preemption, logging,
periodic evaluation. ``python -m mipnet_jax.main --mode=train|train_and_eval``.

Checkpoints (WORKDIR/checkpoints/<step>/) hold the whole train state, the grain iterator of
every process and the config; they are written asynchronously every
``train.checkpoint_every_steps``, at the end and on SIGTERM, and the newest readable one is
resumed automatically (an unreadable newest one is skipped with a warning). The data stream is
a function of the seed and the step, so a resumed run sees exactly the batches an
uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from clu import metrics as clu_metrics
from clu import parameter_overview
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from mipnet_jax import checkpoints, eval_job, evaluate, metric_writers, train
from mipnet_jax.data import inputs, pipeline
from mipnet_jax.models import build_model
from mipnet_jax.progress import Progress, format_duration


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the message names the step."""


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
    if jax.process_count() == 1:
      return self.requested
    flags = multihost_utils.process_allgather(np.array([self.requested]))
    return bool(np.any(flags))

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def checkpoint_manager(workdir: str, cfg) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints,
                                         enable_async_checkpointing=cfg.async_checkpoints)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def restore_latest(mngr, abstract_state, iterator):
  """The newest readable checkpoint -> (state, step), or (None, 0) when there is none. A
  checkpoint that fails to restore (truncated, half written) on any process is skipped with
  a warning and renamed to ``<step>.unreadable`` (kept for inspection): orbax would otherwise
  still count it, refuse to save that step again and skip periodic saves up to it."""
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


def _set_aside(mngr, step: int) -> None:
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


def save(mngr, step: int, state, iterator, config, force: bool = False) -> None:
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
      config=ocp.args.JsonSave(json.loads(config.to_json()))), force=force)


def initial_state(config, model, tx, mesh):
  """A fresh state, or one whose variables come from ``config.init_from`` (names missing
  there, e.g. the MIMBs of a baseline checkpoint, start fresh), replicated on ``mesh``."""
  repl, _ = train.shardings(mesh)
  hw = tuple(config.data.image_hw)
  fresh = jax.jit(lambda: train.create_state(model, tx, hw, jax.random.key(config.seed)),
                  out_shardings=repl)()
  if not config.init_from:
    return fresh
  variables, fresh_names = checkpoints.load_into(config.init_from, jax.device_get(
      fresh.variables))
  logging.info("init_from %s: %d arrays start fresh: %s", config.init_from, len(fresh_names),
               ", ".join(fresh_names[:8]) + (" ..." if len(fresh_names) > 8 else ""))
  return jax.device_put(train.create_state(model, tx, hw, None, variables), repl)


def _evaluate(config, model, state, workdir: str, writer, step: int) -> list[dict]:
  """Process 0 evaluates the current weights on config.eval.splits; the others wait."""
  done = []
  if jax.process_index() == 0:
    variables = jax.tree.map(np.asarray, state.variables)
    for split in eval_job.split_names(config):
      protocol = evaluate.make_protocol(config, split, f"training step {step}")
      out = evaluate.evaluate_split(config, model, variables, protocol,
                                    os.path.join(workdir, "eval", f"step_{step}"))
      scalars = {f"{split}/{k}": v for k, v in out["metrics"].items()}
      if protocol.num_instances > 1 and protocol.keep_lambda < 0:
        # The baseline-style single-instance mode (lambda = 0 only) beside the merged one.
        single = dataclasses.replace(protocol, keep_lambda=0)
        out["metrics_lambda0"] = evaluate.compute_metrics(
            evaluate.score_candidates(out["candidates"], single), single)
        scalars[f"{split}/AP_lambda0"] = out["metrics_lambda0"]["AP"]
      writer.write_scalars(step, scalars)
      done.append(out)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"eval at step {step}")
  return done


def run_schedule(config, num_records: int) -> tuple[int, int]:
  """(steps per epoch, total steps): epochs of the global batch, or train.total_steps."""
  per_epoch = max(1, num_records // config.data.batch_size)
  total = config.train.total_steps or int(round(config.schedule.total_epochs * per_epoch))
  return per_epoch, total


def train_and_evaluate(config, workdir: str, evaluate_during: bool = False) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if possible); returns a summary dict."""
  pidx, pcount = jax.process_index(), jax.process_count()
  mesh = train.make_mesh(dict(config.mesh_shape))
  ds, loading, report = inputs.train_input(config, pidx, pcount)
  per_epoch, total = run_schedule(config, report.num_records)
  model = build_model(config.model, config.num_instances)
  schedule = train.learning_rate(config.optim.learning_rate, per_epoch,
                                 config.schedule.decay_epochs, config.schedule.decay_factor,
                                 config.schedule.warmup_epochs)
  tx = train.make_optimizer(config.optim.name, schedule, config.optim.weight_decay)
  step_fn = train.jit_train_step(model, tx, config.num_instances, config.data.sigma, mesh)
  iterator = pipeline.iterate(ds, loading)
  writer = metric_writers.create_writer(workdir, pidx == 0)
  mngr = checkpoint_manager(workdir, config.train)
  repl = NamedSharding(mesh, P())
  abstract = jax.eval_shape(lambda: train.create_state(model, tx, tuple(config.data.image_hw),
                                                       jax.random.key(0)))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                          abstract)
  state, start = restore_latest(mngr, abstract, iterator)
  if state is None:
    state = initial_state(config, model, tx, mesh)
    logging.info("%s", parameter_overview.get_parameter_overview(
        jax.device_get(state.params), include_stats=False))
  else:
    logging.info("resumed from step %d of %d", start, total)
  logging.info("%s; %d steps per epoch of %d boxes, %d steps, global batch %d on %d devices",
               report, per_epoch, report.num_records, total, config.data.batch_size,
               jax.device_count())
  try:
    return _loop(config, workdir, model, state, start, total, per_epoch, step_fn, iterator,
                 mesh, writer, mngr, evaluate_during)
  finally:
    # Also when the loop raises (NonFiniteLossError): finish the checkpoint in flight, the
    # last good one, before the process goes away.
    mngr.wait_until_finished()
    mngr.close()
    writer.close()


# Averages over the steps between two log lines (created, not annotated: this module uses
# postponed annotations, which clu's Collection cannot read).
TrainMetrics = clu_metrics.Collection.create(loss=clu_metrics.Average.from_output("loss"),
                                             grad_norm=clu_metrics.Average.from_output(
                                                 "grad_norm"))


def _check_finite(flags: list) -> None:
  """Raises NonFiniteLossError naming the first step whose loss was not finite."""
  for step, finite in flags:
    if not bool(finite):
      raise NonFiniteLossError(f"the loss is not finite at step {step}; the state of step "
                               f"{step - 1} was kept and nothing was saved after it")
  flags.clear()


def _loop(config, workdir, model, state, start, total, per_epoch, step_fn, iterator, mesh,
          writer, mngr, evaluate_during) -> dict:
  tc = config.train
  preempt = Preemption()
  progress = Progress(total - start, "train", unit="steps", every_s=tc.progress_every_s,
                      enabled=jax.process_index() == 0)
  eval_every = max(1, int(round(config.train.eval_every_epochs * per_epoch)))
  acc, flags, evals = None, [], []
  clock, last_step, step = time.perf_counter(), start, start
  try:
    while step < total:
      local = next(iterator)
      batch = train.global_batch({k: local[k] for k in train.TRAIN_KEYS}, mesh)
      state, m = step_fn(state, batch)
      step += 1
      one = TrainMetrics.single_from_model_output(loss=m["loss"], grad_norm=m["grad_norm"])
      acc = one if acc is None else acc.merge(one)
      flags.append((step, m["finite"]))
      progress.update(1)
      done = step == total
      if step % tc.log_every_steps == 0 or done:
        _check_finite(flags)
        now = time.perf_counter()
        rate = (step - last_step) / (now - clock)
        writer.write_scalars(step, {**acc.compute(), "steps_per_s": rate,
                                    "images_per_s": rate * config.data.batch_size,
                                    "epoch": step / per_epoch})
        acc, clock, last_step = None, now, step
      stop = preempt.any_process()
      if step % tc.checkpoint_every_steps == 0 or done or stop:
        _check_finite(flags)
        save(mngr, step, state, iterator, config, force=stop or done)
      if evaluate_during and (step % eval_every == 0 or done):
        evals = _evaluate(config, model, state, workdir, writer, step)
      if stop:
        mngr.wait_until_finished()
        logging.warning("preempted: checkpoint of step %d saved; rerun the same command to "
                        "resume", step)
        break
  finally:
    preempt.restore()
    progress.close()
  return dict(step=step, total=total, preempted=step < total, evals=evals, state=state,
              elapsed=format_duration(time.perf_counter() - progress.start))


def format_summary(config, done: dict) -> str:
  """The end-of-run lines: steps, time and, per evaluated split, merged vs lambda=0 AP."""
  state = "preempted at" if done["preempted"] else "finished"
  lines = [f"{config.experiment} (N={config.num_instances}): {state} step {done['step']}/"
           f"{done['total']}"]
  for out in done["evals"]:
    p, m = out["protocol"], out["metrics"]
    line = f"  {p['split']}: AP {m['AP']:.4f} (merged, N={p['num_instances']})"
    if "metrics_lambda0" in out:
      line += f", AP {out['metrics_lambda0']['AP']:.4f} (lambda=0 only, baseline-style)"
    lines.append(line)
  return "\n".join(lines)
