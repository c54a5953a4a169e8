"""notebooks/mipnet_jax_tour.ipynb: committed without outputs, and run top to bottom by nbclient
on a tiny synthetic set (MIPNet trained for a few steps, the baseline loaded from a checkpoint
of random variables, so that both the train and the load path run), all under a temp folder."""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from _tiny_model import tiny
from conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "mipnet_jax_tour.ipynb"
TAGS = ("install", "parameters", "train", "export", "ap-table", "predictions", "sweep")
TRAIN_STEPS = 4
NUM_SHOW = 2
SPLITS = ("synthetic_val", "synthetic_val_pairs")
ROWS = ("baseline HRNet (N=1)", "MIPNet (N=2), merged", "MIPNet (N=2), λ=0 only")
PNG = b"\x89PNG\r\n\x1a\n"


def read_notebook():
  return nbformat.read(NOTEBOOK, as_version=4)


def code_cells(nb) -> dict:
  """{tag: cell} of the tagged code cells."""
  return {tag: cell for cell in nb.cells if cell.cell_type == "code"
          for tag in cell.metadata.get("tags", [])}


def test_notebook_is_committed_without_outputs():
  nb = read_notebook()
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == "python3"
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs"
      assert "execution" not in cell.metadata, f"cell {cell.id} has execution metadata"
      for line in cell.source.splitlines():
        assert len(line) <= 100, f"cell {cell.id}: line over 100 characters: {line!r}"
  assert set(TAGS) <= set(code_cells(nb))
  install = code_cells(nb)["install"].source
  assert '"google.colab" in sys.modules' in install and "REPO_URL" in install


def outputs(cell, kind: str) -> list:
  return [o for o in cell.outputs if o.output_type == kind]


def stdout(cell) -> str:
  return "".join(o.text for o in outputs(cell, "stream") if o.name == "stdout")


def images(cell) -> list[bytes]:
  import base64
  return [base64.b64decode(o.data["image/png"]) for o in cell.outputs
          if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """(executed notebook, {tag: cell}, its WORKDIR, DATA_ROOT, baseline checkpoint)."""
  from mipnet_jax import experiments
  tmp = tmp_path_factory.mktemp("notebook")
  baseline = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick,baseline")
  _, _, checkpoint = tiny(baseline, tmp / "baseline_variables")
  workdir, data_root = tmp / "tour", tmp / "synthetic"
  env = {k: v for k, v in os.environ.items() if not k.startswith("MIPNET_TOUR_")}
  env.update(JAX_PLATFORMS="cpu", MIPNET_TOUR_WORKDIR=str(workdir),
             MIPNET_TOUR_DATA_ROOT=str(data_root), MIPNET_TOUR_TRAIN_STEPS=str(TRAIN_STEPS),
             MIPNET_TOUR_BATCH="8", MIPNET_TOUR_NUM_TRAIN="48", MIPNET_TOUR_NUM_VAL="12",
             MIPNET_TOUR_EVAL_BATCH="16", MIPNET_TOUR_NUM_SHOW=str(NUM_SHOW),
             MIPNET_TOUR_BASELINE_CHECKPOINT=checkpoint)
  nb = read_notebook()
  client = NotebookClient(nb, timeout=600, kernel_name="python3")
  client.execute(cwd=str(tmp), env=env)      # raises CellExecutionError on any failing cell
  return nb, code_cells(nb), workdir, data_root, checkpoint


def test_no_cell_fails_and_the_data_stays_in_the_temp_folder(executed):
  nb, _, workdir, data_root, _ = executed
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not outputs(cell, "error"), cell.id
      errors = "".join(o.text for o in outputs(cell, "stream") if o.name == "stderr")
      assert "Traceback" not in errors, (cell.id, errors[-2000:])
  manifest = json.loads((data_root / "MANIFEST.json").read_text())
  assert (manifest["num_train"], manifest["num_val"]) == (48, 12)
  assert (workdir / "mipnet" / "checkpoints" / str(TRAIN_STEPS)).is_dir()
  assert not (workdir / "baseline" / "checkpoints").exists()     # loaded, not trained


def test_mipnet_trains_and_the_baseline_loads(executed):
  _, cells, _, _, checkpoint = executed
  out = stdout(cells["train"])
  assert f"baseline: loading {checkpoint}" in out
  assert f"(N=2): finished step {TRAIN_STEPS}/{TRAIN_STEPS}" in out
  assert [png[:8] for png in images(cells["train"])] == [PNG]       # the loss curve


def test_the_exported_bundle_gives_the_in_process_poses(executed):
  _, cells, workdir, _, _ = executed
  found = re.search(r"bundle matches in-process model: (\w+) \((\d+) poses on (\d+) images, "
                    r"max keypoint difference (\S+) px\)", stdout(cells["export"]))
  assert found, stdout(cells["export"])
  same, poses, shown, largest = found.groups()
  assert same == "True" and float(largest) == 0.0
  assert int(shown) == NUM_SHOW and int(poses) >= NUM_SHOW
  bundle = workdir / "bundle_mipnet"
  manifest = json.loads((bundle / "bundle.json").read_text())
  assert manifest["num_instances"] == 2 and manifest["weights"].startswith(str(workdir))
  assert (bundle / "predict.jax").is_file() and (bundle / "variables").is_dir()


def test_the_ap_table_has_every_model_and_split(executed):
  _, cells, _, _, _ = executed
  tables = [o.data["text/markdown"] for o in outputs(cells["ap-table"], "display_data")]
  assert len(tables) == 1
  lines = tables[0].splitlines()
  head = [c.strip() for c in lines[0].strip("|").split("|")]
  assert head == ["model"] + [f"{s} {c}" for s in SPLITS for c in ("AP", "AP50", "AR")]
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
  assert [r[0] for r in rows] == list(ROWS)
  for row in rows:
    values = [float(v) for v in row[1:]]
    assert len(values) == 6
    assert all(0.0 <= v <= 1.0 or v == -1.0 for v in values), row


def test_predictions_are_drawn(executed):
  import io

  import matplotlib.image
  _, cells, _, _, _ = executed
  pngs = images(cells["predictions"])
  assert len(pngs) == 1 and pngs[0][:8] == PNG
  height, width = matplotlib.image.imread(io.BytesIO(pngs[0])).shape[:2]
  assert width > 600 and height > 300 * NUM_SHOW        # NUM_SHOW rows of 3 panels


def test_the_confidence_sweep_table_and_plot(executed):
  _, cells, workdir, data_root, _ = executed
  out = stdout(cells["sweep"])
  table = [line.split() for line in out.splitlines() if re.match(r"\s+\d\.\d\d\s", line)]
  assert [float(r[0]) for r in table] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
  baseline_ap, baseline_boxes, mipnet_ap, mipnet_boxes = zip(
      *[(float(r[1]), int(r[2]), float(r[3]), int(r[4])) for r in table])
  assert baseline_boxes == mipnet_boxes                # the same detections for both models
  assert list(baseline_boxes) == sorted(baseline_boxes, reverse=True)
  assert baseline_boxes[0] > baseline_boxes[-1] > 0
  detections = json.loads(
      (data_root / "annotations" / "person_detections_val_pairs.json").read_text())
  assert baseline_boxes[0] == len(detections)
  assert all(0.0 <= ap <= 1.0 or ap == -1.0 for ap in baseline_ap + mipnet_ap)
  folder = workdir / "eval" / "sweep_synthetic_val_pairs"
  rows = json.loads((folder / "sweep.json").read_text())["rows"]
  assert [r["mipnet_boxes"] for r in rows] == list(mipnet_boxes)
  png = (folder / "sweep.png").read_bytes()
  assert png[:8] == PNG and images(cells["sweep"]) == [png]     # the plot is shown
