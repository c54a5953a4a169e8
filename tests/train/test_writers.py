"""Metric writers: the exact JSON lines of a run, appended across restarts; nothing written
off process 0."""

from __future__ import annotations

import json

import numpy as np

from mipnet_jax.train import writers


def test_jsonl_writer_writes_exactly_the_expected_lines(tmp_path):
  workdir = tmp_path / "run"
  w = writers.JsonlWriter(str(workdir))                 # creates the workdir
  w.write_scalars(1, {"loss": np.float32(0.25), "grad_norm": 2})
  w.write_scalars(np.int64(2), {"loss": 0.125})
  w.close()
  text = (workdir / "metrics.jsonl").read_text()
  assert text == ('{"step": 1, "loss": 0.25, "grad_norm": 2.0}\n'
                  '{"step": 2, "loss": 0.125}\n')
  again = writers.JsonlWriter(str(workdir))             # a resumed run appends
  again.write_scalars(3, {"coco_val/AP": 0.5})
  again.close()
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert lines == [{"step": 1, "loss": 0.25, "grad_norm": 2.0}, {"step": 2, "loss": 0.125},
                   {"step": 3, "coco_val/AP": 0.5}]


def test_create_writer_on_and_off_process_0(tmp_path):
  primary = writers.create_writer(str(tmp_path / "p0"), True)
  primary.write_scalars(7, {"loss": 1.5})
  primary.close()
  assert (tmp_path / "p0" / "metrics.jsonl").read_text() == '{"step": 7, "loss": 1.5}\n'
  assert isinstance(primary.writers[0], writers.JsonlWriter)
  other = writers.create_writer(str(tmp_path / "p1"), False)
  other.write_scalars(7, {"loss": 1.5})
  other.close()
  assert other.writers == [] and not (tmp_path / "p1").exists()


def test_multi_writer_fans_out():
  class Recorder:
    def __init__(self):
      self.calls = []

    def write_scalars(self, step, scalars):
      self.calls.append((step, scalars))

    def close(self):
      self.calls.append("closed")

  a, b = Recorder(), Recorder()
  multi = writers.MultiWriter([a, b])
  multi.write_scalars(4, {"x": 1.0})
  multi.close()
  assert a.calls == b.calls == [(4, {"x": 1.0}), "closed"]
