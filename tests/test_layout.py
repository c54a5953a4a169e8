"""The package's layout: imports run one way through the stages, no import cycles, and the
size limits of the style guide (modules <= 400 lines, functions <= 60 lines)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mipnet_jax"
# Stage of each top-level part of the package. A module may import modules of an earlier stage
# and modules of its own part; parts of the same stage are peers and never import each other
# (data/models; train/eval/interop: main hands the evaluators to the training loop).
# experiments (the paper's configs) reads core's named joint sets.
STAGES = {
    "core": 0,
    "experiments": 1, "data": 1, "checkpoints": 1,
    "models": 2,
    "train": 3, "eval": 3, "interop": 3,
    "serve": 4,
    "main": 5,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_names() -> dict[str, pathlib.Path]:
  """'mipnet_jax.eval.run' -> its file, for every module (packages by their __init__)."""
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


def imports_of(name: str, path: pathlib.Path, modules: dict) -> set[str]:
  """The package modules ``name`` imports anywhere in its file (lazy imports included)."""
  is_package = path.name == "__init__.py"
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("mipnet_jax")}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:                      # relative import
        anchor = name.split(".")[:len(name.split(".")) - node.level + is_package]
        base = ".".join(anchor + ([base] if base else []))
      if not base.startswith("mipnet_jax"):
        continue
      for alias in node.names:
        out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  return {m for m in out if m in modules and m != name}


def stage_of(module: str) -> tuple[int, str]:
  parts = module.split(".")
  if len(parts) == 1:
    return -1, "mipnet_jax"                # the package's own __init__
  if parts[1] not in STAGES:
    raise AssertionError(f"{module}: {parts[1]!r} has no stage in tests/test_layout.py STAGES")
  return STAGES[parts[1]], parts[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
  modules = module_names()
  return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_part_of_the_package_has_a_stage(graph):
  parts = {name.split(".")[1] for name in graph if "." in name}
  assert parts == set(STAGES), parts ^ set(STAGES)


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
  """Imports of a later stage, or of a peer part of the same stage."""
  bad = []
  for module, targets in sorted(graph.items()):
    stage, part = stage_of(module)
    for target in sorted(targets):
      t_stage, t_part = stage_of(target)
      if t_part != part and t_stage >= stage:
        bad.append(f"{module} ({part}, stage {stage}) imports {target} ({t_part}, stage "
                   f"{t_stage})")
  return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Tarjan's strongly connected components of more than one module."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_no_import_goes_to_a_later_stage_or_a_peer(graph):
  bad = upward_edges(graph)
  assert not bad, "\n".join(bad)


def test_no_import_cycle(graph):
  assert not cycles(graph)


def test_the_checks_catch_a_bad_graph(tmp_path):
  """Upward, peer and cyclic edges of a hand-made graph are found; the AST reader sees a
  lazy (function-level) import."""
  bad = {"mipnet_jax.core.a": {"mipnet_jax.serve.b"}, "mipnet_jax.serve.b": set(),
         "mipnet_jax.train.c": {"mipnet_jax.eval.d"}, "mipnet_jax.eval.d": {"mipnet_jax.eval.e"},
         "mipnet_jax.eval.e": {"mipnet_jax.eval.d"}}
  assert upward_edges(bad) == [
      "mipnet_jax.core.a (core, stage 0) imports mipnet_jax.serve.b (serve, stage 4)",
      "mipnet_jax.train.c (train, stage 3) imports mipnet_jax.eval.d (eval, stage 3)"]
  assert cycles(bad) == [["mipnet_jax.eval.d", "mipnet_jax.eval.e"]]
  probe = tmp_path / "probe.py"
  probe.write_text("def f():\n  from mipnet_jax.serve import b\n  return b\n")
  modules = {"mipnet_jax.core.a": None, "mipnet_jax.serve.b": None}
  assert imports_of("mipnet_jax.core.a", probe, modules) == {"mipnet_jax.serve.b"}


def _functions(tree: ast.AST):
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node


def test_modules_and_functions_are_small():
  too_long = []
  for name, path in module_names().items():
    source = path.read_text()
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
      too_long.append(f"{name}: {lines} lines")
    for fn in _functions(ast.parse(source)):
      length = fn.end_lineno - fn.lineno + 1
      if length > MAX_FUNCTION_LINES:
        too_long.append(f"{name}.{fn.name}: {length} lines")
  assert not too_long, "\n".join(too_long)
