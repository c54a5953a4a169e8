"""The training loop: sharded steps, checkpoints with exact resume, preemption, logging,
periodic evaluation. ``python -m mipnet_jax.main --mode=train|train_and_eval``.

Checkpoints (WORKDIR/checkpoints/<step>/, mipnet_jax/checkpoints.py) hold the whole train
state, the grain iterator of every process and the config; they are written asynchronously
every ``train.checkpoint_every_steps``, at the end and on SIGTERM, and the newest readable one
is resumed automatically. The data stream is a function of the seed and the step, so a
resumed run sees exactly the batches an uninterrupted one would have. Evaluation runs through
the evaluators the caller passes (``run(variables, step=)`` yielding (name, value), see
eval/evaluators.py): main builds them, so training does not import evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from clu import metrics as clu_metrics
from clu import parameter_overview
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from mipnet_jax import checkpoints
from mipnet_jax.core.progress import Progress, format_duration
from mipnet_jax.data import inputs, pipeline
from mipnet_jax.models.build import build_model
from mipnet_jax.train import optim, sharding, step as train_step, writers


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the message names the step."""


@dataclasses.dataclass(frozen=True)
class TrainSummary:
  """The end of a run: steps done, whether it was preempted, its time, the last evaluation's
  results (``brief()``-able, one per evaluator) and the final train state."""

  experiment: str
  num_instances: int
  step: int
  total: int
  preempted: bool
  elapsed: str
  evals: tuple = ()
  state: Any = None

  def summary(self) -> str:
    """The end-of-run lines: steps, then per evaluated split merged vs lambda=0 AP."""
    done = "preempted at" if self.preempted else "finished"
    lines = [f"{self.experiment} (N={self.num_instances}): {done} step {self.step}/{self.total}"]
    return "\n".join(lines + [result.brief() for result in self.evals])


@dataclasses.dataclass
class LoopContext:
  """What the loop runs with: the config, the jitted step and its data, the writers."""

  config: Any
  step_fn: Callable
  iterator: Any
  mesh: Any
  writer: Any
  mngr: Any
  per_epoch: int
  total: int
  evaluators: tuple = ()


def initial_state(config, model, tx, mesh):
  """A fresh state, or one whose variables come from ``config.init_from`` (names missing
  there, e.g. the MIMBs of a baseline checkpoint, start fresh), replicated on ``mesh``."""
  repl, _ = sharding.shardings(mesh)
  hw = tuple(config.data.image_hw)
  fresh = jax.jit(lambda: train_step.create_state(model, tx, hw, jax.random.key(config.seed)),
                  out_shardings=repl)()
  if not config.init_from:
    return fresh
  variables, fresh_names = checkpoints.load_into(config.init_from, jax.device_get(
      fresh.variables))
  logging.info("init_from %s: %d arrays start fresh: %s", config.init_from, len(fresh_names),
               ", ".join(fresh_names[:8]) + (" ..." if len(fresh_names) > 8 else ""))
  return jax.device_put(train_step.create_state(model, tx, hw, None, variables), repl)


def run_schedule(config, num_records: int) -> tuple[int, int]:
  """(steps per epoch, total steps): epochs of the global batch, or train.total_steps."""
  per_epoch = max(1, num_records // config.data.batch_size)
  total = config.train.total_steps or int(round(config.schedule.total_epochs * per_epoch))
  return per_epoch, total


def train_and_evaluate(config, workdir: str, evaluators=()) -> TrainSummary:
  """Trains ``config`` in ``workdir`` (resuming if possible), running ``evaluators`` every
  ``train.eval_every_epochs`` and at the end; returns the run's summary."""
  pidx, pcount = jax.process_index(), jax.process_count()
  mesh = sharding.make_mesh(dict(config.mesh_shape))
  ds, loading, report = inputs.train_input(config, pidx, pcount)
  per_epoch, total = run_schedule(config, report.num_records)
  model = build_model(config.model, config.num_instances)
  tx = optim.from_config(config, per_epoch)
  ctx = LoopContext(
      config=config, mesh=mesh, per_epoch=per_epoch, total=total, evaluators=tuple(evaluators),
      step_fn=train_step.jit_train_step(model, tx, config.num_instances, config.data.sigma, mesh,
                                        train_step.dropout_key(config.seed)),
      iterator=pipeline.iterate(ds, loading), writer=writers.create_writer(workdir, pidx == 0),
      mngr=checkpoints.train_state_manager(workdir, config.train.keep_checkpoints,
                                           config.train.async_checkpoints))
  repl = NamedSharding(mesh, P())
  abstract = jax.eval_shape(lambda: train_step.create_state(
      model, tx, tuple(config.data.image_hw), jax.random.key(0)))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
                          abstract)
  state, start = checkpoints.restore_newest_readable(ctx.mngr, abstract, ctx.iterator)
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
    return _loop(ctx, state, start)
  finally:
    # Also when the loop raises (NonFiniteLossError): finish the checkpoint in flight, the
    # last good one, before the process goes away.
    ctx.mngr.wait_until_finished()
    ctx.mngr.close()
    ctx.writer.close()


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


def _evaluate(ctx: LoopContext, state, step: int) -> tuple:
  """Process 0 runs every evaluator on the current weights; the others wait. Returns the
  evaluators' results."""
  results = []
  if jax.process_index() == 0:
    variables = jax.tree.map(np.asarray, state.variables)
    for evaluator in ctx.evaluators:
      scalars = {f"{evaluator.name}/{k}": v for k, v in evaluator.run(variables, step=step)}
      ctx.writer.write_scalars(step, scalars)
      results.append(evaluator.result)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"eval at step {step}")
  return tuple(results)


def _log(ctx: LoopContext, step: int, acc, since: tuple[float, int]) -> tuple[float, int]:
  """Writes the averaged metrics and rates since (time, step); returns the new mark."""
  now = time.perf_counter()
  rate = (step - since[1]) / (now - since[0])
  ctx.writer.write_scalars(step, {**acc.compute(), "steps_per_s": rate,
                                  "images_per_s": rate * ctx.config.data.batch_size,
                                  "epoch": step / ctx.per_epoch})
  return now, step


def _loop(ctx: LoopContext, state, start: int) -> TrainSummary:
  tc, total = ctx.config.train, ctx.total
  preempt = checkpoints.Preemption()
  progress = Progress(total - start, "train", unit="steps", every_s=tc.progress_every_s,
                      enabled=jax.process_index() == 0)
  eval_every = max(1, int(round(tc.eval_every_epochs * ctx.per_epoch)))
  acc, flags, evals, mark, step = None, [], (), (time.perf_counter(), start), start
  try:
    while step < total:
      local = next(ctx.iterator)
      batch = sharding.global_batch({k: local[k] for k in train_step.TRAIN_KEYS}, ctx.mesh)
      state, m = ctx.step_fn(state, batch)
      step += 1
      one = TrainMetrics.single_from_model_output(loss=m["loss"], grad_norm=m["grad_norm"])
      acc = one if acc is None else acc.merge(one)
      flags.append((step, m["finite"]))
      progress.update(1)
      done = step == total
      if step % tc.log_every_steps == 0 or done:
        _check_finite(flags)
        mark, acc = _log(ctx, step, acc, mark), None
      stop = preempt.any_process()
      if step % tc.checkpoint_every_steps == 0 or done or stop:
        _check_finite(flags)
        checkpoints.save_train_state(ctx.mngr, step, state, ctx.iterator, ctx.config,
                                     force=stop or done)
      if ctx.evaluators and (step % eval_every == 0 or done):
        evals = _evaluate(ctx, state, step)
      if stop:
        ctx.mngr.wait_until_finished()
        logging.warning("preempted: checkpoint of step %d saved; rerun the same command to "
                        "resume", step)
        break
  finally:
    preempt.restore()
    progress.close()
  return TrainSummary(ctx.config.experiment, ctx.config.num_instances, step, total, step < total,
                      format_duration(time.perf_counter() - progress.start), evals, state)
