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
from mipnet_jax.models.variables import abstract_variables

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "REPRODUCE.md"
ROW_RE = re.compile(r"^\|(?P<cells>.*`configs/.*)\|\s*$")
CONFIG_RE = re.compile(r"`configs/(?P<file>[\w]+)\.py(?::(?P<arg>[\w,=]+))?`")
OVERRIDE_RE = re.compile(r"`([\w.]+)=([^`]+)`")
# The tables whose rows the test checks against the supplementary's text; the rows of
# each are found under their "## Table N" heading.
TABLES = ("1", "2", "5", "7", "8", "10", "11", "12")
# Test-set boxes that are not public: the row documents the det_file the user must pass.
NEEDS_USER_BOXES = {"ochuman_test"}

# overrides: the evaluation column's key=value; model: those of the config column (Table 11's
# ablations), which apply to training and evaluation alike.
Row = collections.namedtuple("Row", "table method arch input config arg model overrides paper")


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
                    dict(OVERRIDE_RE.findall(cells[3])), dict(OVERRIDE_RE.findall(cells[4])),
                    cells[5]))
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
    if isinstance(old, bool):          # bool("False") is True: parse the word
      assert value.lower() in ("true", "false"), f"{key}={value} is not a bool"
      value = value.lower() == "true"
    elif not isinstance(old, str):
      value = type(old)(value)
    parent[path[-1]] = value
  return config


def test_every_table_has_rows():
  counts = collections.Counter(r.table for r in ROWS)
  # Tables 2 and 7: 10 architectures x (baseline, MIPNet); Table 5: 4 x 2; Table 11: 4
  # ablations x (COCO, OCHuman); Table 12: 4 methods x (relaxed, tight boxes).
  assert counts == {"1": 12, "2": 20, "5": 8, "7": 20, "8": 4, "10": 12, "11": 8, "12": 8}


def test_apply_overrides_parses_bools():
  import ml_collections
  config = ml_collections.ConfigDict(dict(model=dict(flag=False, n=4, name="a")))
  apply_overrides(config, {"model.flag": "True", "model.n": "2", "model.name": "b"})
  assert (config.model.flag, config.model.n, config.model.name) == (True, 2, "b")
  apply_overrides(config, {"model.flag": "False"})
  assert config.model.flag is False
  with pytest.raises(AssertionError):
    apply_overrides(config, {"model.flag": "yes"})


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"T{r.table}-{r.method}-{r.arch}-"
                         f"{r.input}-{r.arg}-"
                         f"{'-'.join([*r.model.values(), *r.overrides.values()])}")
def test_row_config_and_evaluation(load_config, row):
  assert (REPO_ROOT / "configs" / f"{row.config}.py").is_file()
  # The config column's fields change the model only; the evaluation's only the evaluation.
  assert all(k.startswith("model.") for k in row.model), row.model
  assert not any(k.startswith("model.") for k in row.overrides), row.overrides
  config = apply_overrides(load_config(row.config, row.arg), {**row.model, **row.overrides})
  h, w = (int(v) for v in row.input.split("×"))
  assert tuple(config.data.image_hw) == (h, w)
  is_baseline = row.method.startswith(("HRNet", "SBL"))
  assert (config.num_instances == 1) == is_baseline
  n = re.search(r"N=(\d)", row.method)
  if n:
    assert config.num_instances == int(n.group(1))
  # Single-instance rows (Tables 10, 12) name their lambda; the others merge every lambda.
  lam = re.search(r"λ\s*=\s*(\d)", row.method)
  assert config.eval.keep_lambda == (int(lam.group(1)) if lam else -1), row
  # Table 11's MIMB ablation is named in the method; every other row is the paper's reduce=4.
  reduce = re.search(r"reduce=(\d)", row.method)
  assert config.model.mimb_only_embed == ("only embed" in row.method), row
  assert config.model.mimb_reduce == (int(reduce.group(1)) if reduce else 4), row
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
      # The row's boxes are the ones evaluated (a split's own boxes option would win).
      assert protocol.boxes == config.eval.boxes


def _model_specs() -> list[tuple[str, str, tuple]]:
  """One (config, arg, model fields) per distinct network among the rows: the input size and
  the schedule flags do not change the parameters, so only architecture, K, N and the config
  column's model fields (Table 11) matter."""
  seen = {}
  for r in ROWS:
    arch = r.config.rsplit("_", 1)[0]                # e.g. hrnet_w48_coco
    n = re.search(r"n=(\d)", r.arg or "")
    n = "1" if "baseline" in (r.arg or "") else (n.group(1) if n else "2")
    fields = tuple(sorted(r.model.items()))
    seen.setdefault((arch, n, fields), (r.config, r.arg or "", fields))
  return sorted(seen.values())


@pytest.mark.parametrize("spec", _model_specs(), ids=lambda s: "-".join(
    [s[0], s[1]] + [f"{k}={v}" for k, v in s[2]]))
def test_row_model_builds(load_config, spec):
  config = apply_overrides(load_config(spec[0], spec[1] or None), dict(spec[2]))
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
  # Tables 11 and 12: each row's number is the paper's for that dataset / box type and method,
  # and every line of the paper's table has exactly one row.
  paper11, paper12 = _paper_tables_11_12(text)
  assert len(paper11) == 8 and len(paper12) == 8, (paper11, paper12)
  ours11 = {(_TABLE11_DATASET[r.overrides["eval.splits"]],
             re.search(r"only embed|reduce=\d", r.method).group()): r.paper
            for r in ROWS if r.table == "11"}
  ours12 = {(r.overrides.get("eval.boxes", "gt"), r.method): r.paper
            for r in ROWS if r.table == "12"}
  assert ours11 == paper11
  assert ours12 == paper12


_TABLE11_DATASET = {"coco_val": "COCO", "ochuman_val": "OCHuman"}
# Table 12's two halves: the heading line of each -> the eval.boxes that reproduces it.
_TABLE12_BOXES = {"ground truth bounding box": "gt",
                  "ground truth bounding box - tight fitting": "gt_tight"}


def _paper_tables_11_12(text: str) -> tuple[dict, dict]:
  """{(dataset, ablation): AP} of Table 11 and {(eval.boxes, method): AP} of Table 12 from
  the supplementary's text; a line seen twice fails."""
  t11, t12, dataset, boxes = {}, {}, None, None

  def put(table, key, value):
    assert key not in table, f"{key} twice in the supplementary"
    table[key] = value

  for line in text.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("Table 11:"):
      dataset = None
    elif line.startswith("Table 12:"):
      boxes = None
    elif not line.startswith("|"):
      continue
    elif cells[0] in ("COCO", "OCHuman") and not any(cells[1:]):
      dataset = cells[0]
    elif cells[0] in _TABLE12_BOXES and not any(cells[1:]):
      boxes = _TABLE12_BOXES[cells[0]]
    elif dataset and cells[:2] == ["MIPNet", "H-48"]:
      put(t11, (dataset, cells[2]), cells[3])
    elif boxes and re.fullmatch(r"(HRNet|MIPNet.*)", cells[0]):
      # "MIPNet ($\lambda = 0$)" -> "MIPNet (λ=0)"; "49.7 (+15.5)" -> "49.7".
      method = re.sub(r"\(\$\\lambda\s*=\s*(\d)\$\)", r"(λ=\1)", cells[0])
      put(t12, (boxes, method), re.match(r"[\d.]+", cells[1]).group())
  return t11, t12
