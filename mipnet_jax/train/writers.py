"""Where training metrics go: WORKDIR/metrics.jsonl and the log always; TensorBoard too when
clu's metric writers import (the optional ``tensorboard`` extra: they need TensorFlow, which
must not be a default dependency). Only process 0 writes."""

from __future__ import annotations

import json
import os

from absl import logging


class JsonlWriter:
  """Scalars as JSON lines {"step", name: value} plus a log line."""

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.workdir = workdir
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write_scalars(self, step: int, scalars: dict) -> None:
    clean = {k: float(v) for k, v in scalars.items()}
    self._file.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._file.flush()
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.5g}" for k, v in clean.items()))

  def close(self) -> None:
    self._file.close()


class MultiWriter:
  """Fans every call out to several writers."""

  def __init__(self, writers):
    self.writers = list(writers)

  def write_scalars(self, step, scalars):
    for w in self.writers:
      w.write_scalars(step, scalars)

  def close(self):
    for w in self.writers:
      w.close()


def create_writer(workdir: str, is_primary: bool):
  """The writers of a run: none off process 0; JSONL (+ TensorBoard when available)."""
  if not is_primary:
    return MultiWriter([])
  writers = [JsonlWriter(workdir)]
  try:
    from clu import metric_writers   # imports TensorFlow; only with the tensorboard extra
  except ImportError:
    logging.info("clu metric writers need TensorFlow (pip install -e '.[tensorboard]'); "
                 "writing %s/metrics.jsonl only", workdir)
  else:
    writers.append(metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")))
  return MultiWriter(writers)
