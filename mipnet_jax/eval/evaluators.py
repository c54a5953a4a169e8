"""Pluggable evaluators (big_vision's contract): an evaluator is built from a config entry and
``run(variables)`` yields ``(metric name, value)`` pairs.

The training loop (``train_and_eval``: merged and λ = 0 AP every few epochs) and
``--mode=eval`` (``run_eval``) run the same evaluators; main builds them, so the training code never
imports evaluation. ``EVALUATORS`` maps an entry's ``type`` (``config.eval_data.<split>.type``,
default "keypoints") to its class.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterator

from mipnet_jax.eval.protocol import evaluated_n, make_protocol, split_names
from mipnet_jax.eval.run import EvalResult, evaluate_split
from mipnet_jax.models.load import LoadedModel, load_model, resolve_checkpoint


@typing.runtime_checkable
class Evaluator(typing.Protocol):
  """What the training loop and ``--mode=eval`` need of an evaluator."""

  name: str
  result: EvalResult | None

  def run(self, variables: dict, *, step: int | None = None,
          weights: str = "") -> Iterator[tuple[str, float]]:
    ...


@dataclasses.dataclass
class KeypointEvaluator:
  """Keypoint AP of one split of ``config.eval_data`` with the protocol of ``config.eval``.

  ``run`` writes the evaluation's files under ``out_dir`` (``out_dir/step_<step>`` during
  training), keeps the typed result in ``result`` and yields its metrics, plus
  ``AP_lambda0`` (λ = 0 alone, baseline-style) when ``with_lambda0`` and N > 1 are merged.
  """

  config: typing.Any
  name: str
  model: typing.Any
  out_dir: str
  with_lambda0: bool = False
  show_progress: bool = True
  result: EvalResult | None = None

  def run(self, variables: dict, *, step: int | None = None,
          weights: str = "") -> Iterator[tuple[str, float]]:
    weights = weights or (f"training step {step}" if step is not None else "")
    out_dir = self.out_dir if step is None else os.path.join(self.out_dir, f"step_{step}")
    protocol = make_protocol(self.config, self.name, weights)
    self.result = evaluate_split(self.config, LoadedModel(self.model, variables, weights),
                                 protocol, out_dir, self.show_progress, self.with_lambda0)
    yield from self.result.metrics.items()
    if self.result.metrics_lambda0 is not None:
      yield "AP_lambda0", self.result.metrics_lambda0["AP"]


EVALUATORS: dict[str, type] = {"keypoints": KeypointEvaluator}


def from_config(config, model, out_dir: str, *, with_lambda0: bool = False,
                show_progress: bool = True) -> list[Evaluator]:
  """One evaluator per split of ``config.eval.splits`` (checked before anything runs)."""
  evaluators = []
  for name in split_names(config):
    make_protocol(config, name, "")              # config errors before the model runs
    kind = config.eval_data[name].get("type", "keypoints")
    if kind not in EVALUATORS:
      raise ValueError(f"config.eval_data.{name}.type: unknown evaluator {kind!r} "
                       f"(known: {', '.join(EVALUATORS)})")
    evaluators.append(EVALUATORS[kind](config, name, model, out_dir,
                                       with_lambda0=with_lambda0, show_progress=show_progress))
  return evaluators


def run_eval(config, workdir: str, show_progress: bool = True) -> list[EvalResult]:
  """``--mode=eval``: the configured model (``resolve_checkpoint``) on every split of
  ``config.eval.splits``, files under WORKDIR/eval."""
  for name in split_names(config):              # config errors before the model loads
    make_protocol(config, name, "")
  loaded = load_model(config, evaluated_n(config), resolve_checkpoint(config, workdir))
  out = []
  for evaluator in from_config(config, loaded.model, os.path.join(workdir, "eval"),
                               show_progress=show_progress):
    for _ in evaluator.run(loaded.variables, weights=loaded.weights):
      pass
    out.append(evaluator.result)
  return out
