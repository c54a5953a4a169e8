"""The training loop on TinyNet (tests/train/_train_helpers.py) and generated synthetic data:
the schedule, a non-finite loss stopping the run by name, init_from, the injected evaluators
and the end-of-run summary. (Resume, preemption and sharding of the real model:
test_distributed.py.)"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import optax
import pytest
from _train_helpers import TinyNet, quick_config

from mipnet_jax import checkpoints
from mipnet_jax.data import synthetic
from mipnet_jax.train import loop, optim, sharding


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  synthetic.ensure(str(root), 0, 8, 2, (128, 128), workers=1)
  return root


@pytest.fixture
def tiny_net(monkeypatch):
  monkeypatch.setattr(loop, "build_model", lambda cfg, n: TinyNet(lambda_dim=n))


def metric_lines(workdir) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_run_schedule(tmp_path):
  config = quick_config(tmp_path)
  config.data.batch_size = 8
  config.train.total_steps = 0
  config.schedule.total_epochs = 3
  assert loop.run_schedule(config, 100) == (12, 36)          # 100 // 8 steps an epoch
  assert loop.run_schedule(config, 5) == (1, 3)              # at least one step an epoch
  config.train.total_steps = 7
  assert loop.run_schedule(config, 100) == (12, 7)           # total_steps wins


def test_trainer_raises_naming_the_non_finite_step(tmp_path, data_root, monkeypatch, tiny_net):
  """The real loop on TinyNet: a NaN at step 3 stops training with NonFiniteLossError naming
  step 3, after the checkpoint of step 2 and before any later one."""
  calls = []
  real_global_batch = sharding.global_batch

  def poisoned(local, mesh):
    calls.append(1)
    if len(calls) == 3:
      local = dict(local, target_weight=np.full_like(local["target_weight"], np.nan))
    return real_global_batch(local, mesh)

  monkeypatch.setattr(sharding, "global_batch", poisoned)
  config = quick_config(data_root, workdir_steps=6)
  with pytest.raises(loop.NonFiniteLossError, match=r"not finite at step 3\b"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert len(calls) == 3
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [2]
  assert [l["step"] for l in metric_lines(tmp_path)] == [1, 2]   # step 3 never logged a loss


def test_initial_state_from_init_from_keeps_fresh_names(tmp_path):
  """loop.initial_state with config.init_from: stored arrays replace the fresh ones, a
  name the checkpoint lacks (here the lambda embedding) keeps its fresh init, and the
  optimiser state is that of the merged params."""
  model = TinyNet()
  tx = optim.make_optimizer("adam", optax.constant_schedule(1e-3))
  config = quick_config(tmp_path)
  mesh = sharding.make_mesh({"data": -1})
  fresh = jax.device_get(loop.initial_state(config, model, tx, mesh))
  stored = jax.tree.map(lambda x: np.asarray(x) + 1.0, fresh.variables)
  del stored["params"]["Dense_0"]
  config.init_from = checkpoints.save_variables(str(tmp_path / "init"), stored)
  state = jax.device_get(loop.initial_state(config, model, tx, mesh))
  np.testing.assert_array_equal(state.params["Dense_0"]["kernel"],
                                fresh.params["Dense_0"]["kernel"])
  for name in ("Conv_0", "Conv_1"):
    np.testing.assert_array_equal(state.params[name]["kernel"],
                                  fresh.params[name]["kernel"] + 1.0)
  np.testing.assert_array_equal(state.batch_stats["BatchNorm_0"]["var"],
                                fresh.batch_stats["BatchNorm_0"]["var"] + 1.0)
  assert int(state.step) == 0
  assert all(not np.any(x) for x in jax.tree.leaves(state.opt_state[0].mu))


@dataclasses.dataclass
class Brief:
  text: str

  def brief(self) -> str:
    return self.text


class RecordingEvaluator:
  """An evaluator double: records the steps and weights it was run on, yields one metric."""

  name = "fake_val"

  def __init__(self):
    self.calls = []
    self.result = None

  def run(self, variables, *, step=None, weights=""):
    self.calls.append((step, jax.tree.map(np.shape, variables)))
    self.result = Brief(f"fake_val: AP {step / 100:.2f} at step {step}")
    yield "AP", step / 100
    yield "AR", 0.5


def test_evaluators_run_on_their_schedule_and_the_summary_names_the_results(
    tmp_path, data_root, tiny_net):
  config = quick_config(data_root, workdir_steps=5)
  config.train.eval_every_epochs = 1
  evaluator = RecordingEvaluator()
  done = loop.train_and_evaluate(config, str(tmp_path), (evaluator,))
  lines = metric_lines(tmp_path)
  per_epoch = round(lines[0]["step"] / lines[0]["epoch"])    # epoch = step / steps per epoch
  want = [s for s in range(1, 6) if s % per_epoch == 0 or s == 5]
  assert [step for step, _ in evaluator.calls] == want
  assert per_epoch > 1 and len(want) < 5           # some steps ran without an evaluation
  shapes = jax.tree.map(np.shape, jax.device_get(done.state.variables))
  assert all(v == shapes for _, v in evaluator.calls)         # the current weights, on host
  evals = [l for l in lines if "fake_val/AP" in l]
  assert [(l["step"], l["fake_val/AP"], l["fake_val/AR"]) for l in evals] == [
      (s, pytest.approx(s / 100), 0.5) for s in want]
  assert (done.step, done.total, done.preempted, done.num_instances) == (5, 5, False, 2)
  assert done.evals == (evaluator.result,)
  assert done.summary() == (f"{config.experiment} (N=2): finished step 5/5\n"
                            "fake_val: AP 0.05 at step 5")
  assert int(done.state.step) == 5


def test_summary_of_a_preempted_run():
  summary = loop.TrainSummary("exp", 3, 40, 100, True, "0:01:00",
                              (Brief("a: AP 0.10"), Brief("b: AP 0.20")))
  assert summary.summary() == "exp (N=3): preempted at step 40/100\na: AP 0.10\nb: AP 0.20"
