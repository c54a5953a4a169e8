"""REPRODUCE.md: every table row names a config that exists and builds, its evaluation
overrides name real fields and splits, and its paper number is the supplementary's."""

from __future__ import annotations

import collections
import pathlib
import re

import jax
import pytest

from mipnet_jax.eval.protocol import make_protocol
from mipnet_jax.models.build import build_model
from mipnet_jax.models.load import abstract_variables

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "REPRODUCE.md"
ROW_RE = re.compile(r"^\|(?P<cells>.*`configs/.*)\|\s*$")
CONFIG_RE = re.compile(r"`configs/(?P<file>[\w]+)\.py(?::(?P<arg>[\w,=]+))?`")
OVERRIDE_RE = re.compile(r"`([\w.]+)=([^`]+)`")
# The tables whose rows the test checks against the supplementary's text; the rows of
# each are found under their "## Table N" heading.
TABLES = ("1", "2", "5", "7", "8", "10")
# Test-set boxes that are not public: the row documents the det_file the user must pass.
NEEDS_USER_BOXES = {"ochuman_test"}

Row = collections.namedtuple("Row", "table method arch input config arg overrides paper")


def parse_rows() -> list[Row]:
  rows, table = [], None
  for line in DOC.read_text().splitlines():
    heading = re.match(r"^## Table (\d+)", line)
    if heading:
      table = heading.group(1)
    elif line.startswith("## "):
      table = None
    m = ROW_RE.match(line)
    if not m or table is None:
      continue
    cells = [c.strip() for c in m.group("cells").split("|")]
    cfg = CONFIG_RE.search(cells[3])
    assert cfg, f"REPRODUCE.md row without a config: {line}"
    rows.append(Row(table, cells[0], cells[1], cells[2], cfg.group("file"), cfg.group("arg"),
                    dict(OVERRIDE_RE.findall(cells[4])), cells[5]))
  return rows


ROWS = parse_rows()


def apply_overrides(config, overrides: dict):
  """``key=value`` as ``--config.key=value`` would: the field must exist; the value takes
  its type."""
  for key, value in overrides.items():
    node, *path = key.split(".")
    parent = config[node]
    for part in path[:-1]:
      parent = parent[part]
    assert path[-1] in parent, f"REPRODUCE.md names a missing field {key}"
    old = parent[path[-1]]
    parent[path[-1]] = type(old)(value) if not isinstance(old, str) else value
  return config


def test_every_table_has_rows():
  counts = collections.Counter(r.table for r in ROWS)
  # Tables 2 and 7: 10 architectures x (baseline, MIPNet); Table 5: 4 x 2.
  assert counts == {"1": 12, "2": 20, "5": 8, "7": 20, "8": 4, "10": 12}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"T{r.table}-{r.method}-{r.arch}-"
                         f"{r.input}-{r.arg}-{'-'.join(r.overrides.values())}")
def test_row_config_and_evaluation(load_config, row):
  assert (REPO_ROOT / "configs" / f"{row.config}.py").is_file()
  config = apply_overrides(load_config(row.config, row.arg), row.overrides)
  h, w = (int(v) for v in row.input.split("×"))
  assert tuple(config.data.image_hw) == (h, w)
  is_baseline = row.method.startswith(("HRNet", "SBL"))
  assert (config.num_instances == 1) == is_baseline
  n = re.search(r"N=(\d)", row.method)
  if n:
    assert config.num_instances == int(n.group(1))
  # An AP in percent with one decimal, as the supplementary prints it (its value is checked
  # against the supplementary's text in test_paper_numbers_match_the_supplementary).
  assert re.fullmatch(r"\d{2}\.\d", row.paper), row.paper
  for split in config.eval.splits.split(","):
    if split in NEEDS_USER_BOXES and config.eval.boxes == "detections":
      with pytest.raises(ValueError, match="det_file is empty"):
        make_protocol(config, split, "")
    else:
      protocol = make_protocol(config, split, "")
      assert protocol.num_instances == config.num_instances


def _model_specs() -> list[tuple[str, str]]:
  """One (config, arg) per distinct network among the rows: the input size and the
  schedule flags do not change the parameters, so only architecture, K and N matter."""
  seen = {}
  for r in ROWS:
    arch = r.config.rsplit("_", 1)[0]                # e.g. hrnet_w48_coco
    n = re.search(r"n=(\d)", r.arg or "")
    n = "1" if "baseline" in (r.arg or "") else (n.group(1) if n else "2")
    seen.setdefault((arch, n), (r.config, r.arg or ""))
  return sorted(seen.values())


@pytest.mark.parametrize("spec", _model_specs())
def test_row_model_builds(load_config, spec):
  config = load_config(spec[0], spec[1] or None)
  model = build_model(config.model, config.num_instances)
  variables = abstract_variables(model, tuple(config.data.image_hw))
  assert jax.tree.leaves(variables["params"])


def _paper_row_pattern(row: Row) -> re.Pattern:
  method = {"SBL": "(SBL|SimpleBaseline)"}.get(row.method, re.escape(row.method.split()[0]))
  size = row.input.replace("×", r"\s*×\s*")
  # | method | arch | input | [GFLOPs |] AP ...
  return re.compile(rf"\|\s*{method}\s*\|\s*{re.escape(row.arch)}\s*\|\s*{size}\s*\|"
                    rf"(\s*[\d.]+\s*\|)?\s*{re.escape(row.paper)}\b")


def test_paper_numbers_match_the_supplementary(shared_data):
  seeds = sorted((shared_data.parent / "seeds").glob("*.txt"))
  if not seeds:
    pytest.skip(f"no supplementary text under {shared_data.parent / 'seeds'}")
  text = "\n".join(p.read_text() for p in seeds)
  for row in ROWS:
    if row.table in ("2", "5", "7"):
      assert _paper_row_pattern(row).search(text), f"Table {row.table} row {row} not in paper"
  # Tables 1 and 10 list one AP per dataset column; check the values appear in those tables.
  summaries = re.findall(r"\| (HRNet|MIPNet[^|]*?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", text)
  values = {v for s in summaries for v in s[1:]}
  for row in ROWS:
    if row.table in ("1", "10"):
      assert row.paper in values, row
