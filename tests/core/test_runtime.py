"""XLA:CPU flags per architecture: added once, never over the user's own, and not at all when
MIPNET_NO_XLA_FLAGS=1."""

import pytest

from mipnet_jax.core import runtime


@pytest.fixture
def env(monkeypatch):
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.delenv("MIPNET_NO_XLA_FLAGS", raising=False)
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
