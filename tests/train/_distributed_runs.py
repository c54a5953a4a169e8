"""The subprocess harness of tests/train/test_distributed.py: the training runs (the
uninterrupted reference, the 8-device worker) made once per session and shared by the xdist
workers through lock files, the jobs' command lines and environments, and readers of their
checkpoints and metrics."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from typing import ClassVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from conftest import REPO_ROOT

CONFIG = REPO_ROOT / "configs" / "hrnet_w32_synthetic_256x192.py"
HERE = pathlib.Path(__file__).resolve().parent      # tests/train: the workers live here
TOTAL = 10
CKPT_EVERY = 2
TIMEOUT = 900            # seconds; a hung run (e.g. a collective waiting forever) fails


@dataclasses.dataclass
class Setup:
  root: object          # pathlib.Path of this module's files
  data: str             # the generated synthetic set
  cache: str            # the shared XLA compilation cache


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def env(setup: Setup, devices: int = 1) -> dict:
  """The subprocess environment: ``devices`` CPU devices, the shared compilation cache."""
  e = dict(os.environ)
  e.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
           JAX_COMPILATION_CACHE_DIR=setup.cache,
           JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
           JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1", PYTHONUNBUFFERED="1")
  e.pop("MIPNET_NO_XLA_FLAGS", None)
  return e


def train_args(setup: Setup, workdir, total: int = TOTAL) -> list[str]:
  """The flags of every training run here (the same command for a run and its rerun)."""
  return [f"--config={CONFIG}:quick", "--mode=train", f"--workdir={workdir}",
          f"--config.data.root={setup.data}", "--config.data.synthetic.num_train=8",
          "--config.data.synthetic.num_val=2", "--config.data.synthetic.image_hw=(128,128)",
          "--config.data.image_hw=(64,64)", "--config.data.heatmap_hw=(16,16)",
          "--config.data.batch_size=8", f"--config.train.total_steps={total}",
          f"--config.train.checkpoint_every_steps={CKPT_EVERY}",
          "--config.train.log_every_steps=1", "--config.train.progress_every_s=1000"]


def main_cmd(setup: Setup, workdir) -> list[str]:
  return [sys.executable, "-m", "mipnet_jax.main", *train_args(setup, workdir)]


class Job:
  """A subprocess with its output in a log file."""

  running: ClassVar[set] = set()  # stopped at the end of the session

  def __init__(self, cmd: list[str], log, environ: dict):
    self.log = log
    self.started = time.monotonic()
    with open(log, "w") as f:
      self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=environ,
                                   cwd=REPO_ROOT)
    Job.running.add(self)

  def stop(self) -> None:
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()
    Job.running.discard(self)

  def text(self) -> str:
    with open(self.log) as f:
      return f.read()

  def wait(self, expect_rc: int | None = 0) -> str:
    try:
      rc = self.proc.wait(timeout=max(1, TIMEOUT - (time.monotonic() - self.started)))
    except subprocess.TimeoutExpired:
      self.stop()
      raise AssertionError(f"timed out; log {self.log}:\n{self.text()[-3000:]}") from None
    Job.running.discard(self)
    if expect_rc is not None:
      assert rc == expect_rc, f"exit code {rc}; log {self.log}:\n{self.text()[-3000:]}"
    return self.text()


def steps_in(workdir) -> list[int]:
  """The finalised checkpoint steps of a run (orbax writes to a temporary name first)."""
  ckdir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckdir):
    return []
  return sorted(int(n) for n in os.listdir(ckdir) if n.isdigit())


def read_state(workdir, step: int) -> dict:
  """Checkpoint ``step``'s whole train state as numpy, flattened by key path."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
  restore = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(
      restore_args=restore))
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def assert_bit_identical(got: dict, want: dict, what: str) -> None:
  assert sorted(got) == sorted(want), what
  differ = [k for k in want if not np.array_equal(got[k], want[k])]
  assert not differ, f"{what}: {len(differ)} of {len(want)} arrays differ, e.g. {differ[:3]}"


def metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def wait_for_checkpoint(job: Job, workdir, at_least: int, deadline_s: float = TIMEOUT) -> None:
  """Polls until a finalised checkpoint >= ``at_least`` exists (or fails if the run ends)."""
  end = time.monotonic() + deadline_s
  while not any(s >= at_least for s in steps_in(workdir)):
    assert job.proc.poll() is None, f"the run ended before checkpoint {at_least}:\n" + \
        job.text()[-3000:]
    assert time.monotonic() < end, "no checkpoint in time"
    time.sleep(0.02)


# --- the two compile-heavy jobs, made once per session ------------------------------------
#
# CI runs ``pytest -n 2``: the tests below may land on either xdist worker, so the reference
# run and the 8-device worker are made once per session in a directory the workers share,
# under a file lock. A worker that needs one of them starts the other one alongside (XLA
# compiles on one core), and one that finds its job taken waits for it.

def make_reference(setup: Setup) -> None:
  out = Job(main_cmd(setup, setup.root / "reference"), setup.root / "reference.log",
            env(setup, 1)).wait()
  assert f"finished step {TOTAL}/{TOTAL}" in out


def make_sharding(setup: Setup) -> None:
  Job([sys.executable, str(HERE / "_sharding_worker.py"), str(setup.root / "sharding.npz"),
       str(setup.root / "sharding_ckpt")], setup.root / "sharding.log", env(setup, 8)).wait()


JOBS = {"reference": make_reference, "sharding": make_sharding}


def make_once(setup: Setup, name: str, blocking: bool = True) -> bool:
  """Makes job ``name`` unless it is made; False (not blocking) when another holds it."""
  with open(setup.root / f"{name}.lock", "a") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      return False
    done = setup.root / f"{name}.done"
    if not done.exists():
      JOBS[name](setup)
      done.touch()
    return True                   # closing the file releases the lock


BACKGROUND: list[threading.Thread] = []


def obtain(setup: Setup, name: str) -> None:
  for other in JOBS:
    if other != name and not (setup.root / f"{other}.done").exists():
      thread = threading.Thread(target=make_once, args=(setup, other, False), daemon=True)
      thread.start()
      BACKGROUND.append(thread)
  make_once(setup, name)
