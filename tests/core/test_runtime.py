"""XLA:CPU flags per architecture: added once, never over the user's own, and not at all when
MIPNET_NO_XLA_FLAGS=1."""

import pytest

from mipnet_jax.core import runtime


@pytest.fixture
def env(monkeypatch):
  """No XLA_FLAGS / MIPNET_NO_XLA_FLAGS during the test, and after it the environment as it
  was: setenv records the prior state (a bare delenv of an absent variable records nothing,
  and the flags configure_cpu_xla sets would leak into the worker, whose later subprocesses,
  e.g. test_bundle's fresh process, would then compile with other flags than the worker)."""
  for name in ("XLA_FLAGS", "MIPNET_NO_XLA_FLAGS"):
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)
  return monkeypatch


def test_flags_of_each_architecture_are_added_once(env):
  import os
  assert runtime.configure_cpu_xla("hrnet") == (
      "--xla_cpu_experimental_ynn_fusion_type=eltwise")
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=eltwise"
  # Again, or for the other network: the flag is set already and is kept as it is.
  assert runtime.configure_cpu_xla("hrnet") == "--xla_cpu_experimental_ynn_fusion_type=eltwise"
  assert runtime.configure_cpu_xla("simple_baseline") == (
      "--xla_cpu_experimental_ynn_fusion_type=eltwise")


def test_user_flags_are_kept_and_extended(env):
  env.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  assert runtime.configure_cpu_xla("simple_baseline") == (
      "--xla_force_host_platform_device_count=4 "
      "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution")
  env.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=none")
  assert runtime.configure_cpu_xla("hrnet") == "--xla_cpu_experimental_ynn_fusion_type=none"
  assert runtime.configure_cpu_xla("unknown_net") == (
      "--xla_cpu_experimental_ynn_fusion_type=none")


def test_opt_out_changes_nothing(env):
  import os
  env.setenv("MIPNET_NO_XLA_FLAGS", "1")
  assert runtime.configure_cpu_xla("hrnet") == ""
  assert "XLA_FLAGS" not in os.environ


def test_the_env_fixture_leaves_no_flags_behind():
  """Runs after the tests above in the same process: configure_cpu_xla's flags are gone."""
  import os
  assert "ynn_fusion" not in os.environ.get("XLA_FLAGS", "")
