"""Shared test fixtures: the read-only sample data in ../shared/data (or $MIPNET_SHARED_DATA)."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
  env = os.environ.get("MIPNET_SHARED_DATA")
  return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  path = shared_data_dir()
  if not path.is_dir():
    pytest.skip(f"shared sample data not found at {path} (set MIPNET_SHARED_DATA to the "
                "shared/data folder)")
  return path


def load_module(path: pathlib.Path, name: str):
  """Imports the Python file ``path`` (a script or config) as module ``name``."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_script(name: str):
  """scripts/<name>.py as a module (the reference re-implementations used as oracles)."""
  return load_module(REPO_ROOT / "scripts" / f"{name}.py", name)


@pytest.fixture(scope="session")
def load_config():
  """Loads configs/<name>.py[:arg] the way ml_collections' config flags do."""

  def load(name: str, arg: str | None = None):
    return load_module(REPO_ROOT / "configs" / f"{name}.py", f"_config_{name}").get_config(arg)

  return load
