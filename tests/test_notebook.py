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

from conftest import (REPO_ROOT, load_oracle, pycocotools_limb_sigmas, pycocotools_stats,
                      tiny_checkpoint)

# One worker runs this module, so its module fixture runs once (pyproject: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("notebook")

NOTEBOOK = REPO_ROOT / "notebooks" / "mipnet_jax_tour.ipynb"
TAGS = ("install", "parameters", "train", "export", "ap-table", "predictions", "shared-box",
        "sweep")
TRAIN_STEPS = 4
NUM_SHOW = 2
SPLITS = ("synthetic_val", "synthetic_val_pairs", "synthetic_val_shared",
          "synthetic_val_shared_tight")
ROWS = ("baseline HRNet (N=1)", "MIPNet (N=2), merged", "MIPNet (N=2), λ=0 only")
PNG = b"\x89PNG\r\n\x1a\n"


REF = load_oracle("reference_postprocess")
ANNOTATIONS = {"synthetic_val": "person_keypoints_val.json",
               "synthetic_val_pairs": "person_keypoints_val_pairs.json",
               "synthetic_val_shared": "person_keypoints_val_shared.json",
               "synthetic_val_shared_tight": "person_keypoints_val_shared.json"}
# The box kind in each split's output file names (the tight split: eval_data boxes=gt_tight).
BOXES = {"synthetic_val_shared_tight": "gttight"}
# The model's joints (COCO order) scored on the shared splits: the 12 limbs, COCO ids 5-16,
# the shared annotations' joints 0-11 in that order.
LIMBS = list(range(5, 17))


def output_tag(split: str, n: int) -> str:
  return f"{split}_{BOXES.get(split, 'gt')}_N{n}_merged"


def split_sigmas(split: str) -> list[float]:
  """The OKS sigmas of a split's evaluated joints: pycocotools' own limb sigmas for the shared
  splits (their candidates and results hold the 12 limbs), else the synthetic (COCO) ones."""
  from mipnet_jax.core.meta import get_meta
  return pycocotools_limb_sigmas() if "shared" in split else list(get_meta("synthetic").sigmas)


def reference_results(candidates, keep_lambda=None, min_box_score=None,
                      split: str = "synthetic_val") -> list[dict]:
  """COCO results of saved candidates by an independent path: the reference post-processing
  loop (gamma 0.9 power, OKS-NMS 0.9 with ``split``'s sigmas) on the candidates of boxes >=
  ``min_box_score``."""
  import numpy as np

  c = candidates
  if min_box_score is not None:
    c = c.take(np.flatnonzero(c.box_score >= min_box_score))
  rows, scores = REF.reference_postprocess(c.keypoints, c.box_score, c.area, c.image_id, c.lam,
                                           split_sigmas(split), gamma=0.9,
                                           gamma_mode="power", keep_lambda=keep_lambda)
  return [{"image_id": int(c.image_id[r]), "category_id": 1,
           "keypoints": c.keypoints[r].astype(np.float64).ravel().tolist(), "score": s}
          for r, s in zip(rows, scores)]


def reference_ap(data_root, split: str, candidates, keep_lambda=None, min_box_score=None):
  """AP of ``reference_results`` by pycocotools with the split's sigmas (0 for none); the
  shared splits as OCPose: the 12 limbs, GT area 0.53 x box w x h."""
  results = reference_results(candidates, keep_lambda, min_box_score, split)
  if not results:
    return 0.0
  gt = str(data_root / "annotations" / ANNOTATIONS[split])
  return pycocotools_stats(gt, results, split_sigmas(split),
                           area_factor=0.53 if "shared" in split else None)[0]


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
  _, _, checkpoint = tiny_checkpoint(baseline, tmp / "baseline_variables")
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


def bundle_pose_count(bundle, data_root) -> int:
  """The poses the bundle predicts on the ground-truth boxes of the notebook's NUM_SHOW
  crowded images (its selection: images of exactly two people first, then by id)."""
  import numpy as np

  from mipnet_jax.data.image import read_image
  from mipnet_jax.serve.predictor import Predictor
  pairs = json.loads((data_root / "annotations" / ANNOTATIONS["synthetic_val_pairs"]
                      ).read_text())
  people = {}
  for ann in pairs["annotations"]:
    people.setdefault(ann["image_id"], []).append(ann["bbox"])
  chosen = sorted(pairs["images"], key=lambda im: (len(people.get(im["id"], [])) != 2, im["id"]))
  predictor = Predictor.from_bundle(str(bundle))
  return sum(len(predictor(read_image(str(data_root / "images" / "val" / im["file_name"])),
                           np.array(people.get(im["id"], []), np.float32).reshape(-1, 4)))
             for im in chosen[:NUM_SHOW])


def test_the_exported_bundle_gives_the_in_process_poses(executed):
  _, cells, workdir, data_root, _ = executed
  found = re.search(r"bundle matches in-process model: (\w+) \((\d+) poses on (\d+) images, "
                    r"max keypoint difference (\S+) px\)", stdout(cells["export"]))
  assert found, stdout(cells["export"])
  same, poses, shown, largest = found.groups()
  assert same == "True" and float(largest) == 0.0
  bundle = workdir / "bundle_mipnet"
  # The same images and boxes through the bundle here: the number of poses printed.
  assert int(shown) == NUM_SHOW and int(poses) == bundle_pose_count(bundle, data_root)
  manifest = json.loads((bundle / "bundle.json").read_text())
  assert manifest["num_instances"] == 2 and manifest["weights"].startswith(str(workdir))
  assert (bundle / "predict.jax").is_file() and (bundle / "variables").is_dir()


def test_the_ap_table_has_every_model_and_split(executed):
  import numpy as np

  from mipnet_jax.eval.candidates import load_candidates
  _, cells, workdir, data_root, _ = executed
  tables = [o.data["text/markdown"] for o in outputs(cells["ap-table"], "display_data")]
  assert len(tables) == 1
  lines = tables[0].splitlines()
  head = [c.strip() for c in lines[0].strip("|").split("|")]
  assert head == ["model"] + [f"{s} {c}" for s in SPLITS for c in ("AP", "AP50", "AR")]
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
  assert [r[0] for r in rows] == list(ROWS)
  # Merged rows: the metrics files run_eval wrote for each model; the lambda=0 row: the
  # reference loop with lambda=0 alone on MIPNet's saved candidates, scored by pycocotools.
  # (After a few steps every AP is 0.0; the results files behind the merged rows are checked
  # against the reference loop too, so the check does not rest on zeros alone.)
  want = {}
  for row, name, n in zip(ROWS[:2], ("baseline", "mipnet"), (1, 2)):
    metrics = {s: json.loads((workdir / name / "eval" / f"metrics_{output_tag(s, n)}.json"
                              ).read_text())["metrics"] for s in SPLITS}
    want[row] = [f"{metrics[s][c]:.4f}" for s in SPLITS for c in ("AP", "AP50", "AR")]
  assert [r[1:] for r in rows[:2]] == [want[ROWS[0]], want[ROWS[1]]]
  mipnet_candidates = {}
  # The shared splits hold the 12 limb joints; the tight one is scored on other boxes than
  # the relaxed one (same people, same annotation file).
  for i, split in enumerate(SPLITS):
    for name, n, row in (("mipnet", 2, 1), ("baseline", 1, 0)):
      folder = workdir / name / "eval"
      c = load_candidates(str(folder / f"candidates_{output_tag(split, n)}.npz"))
      assert c.keypoints.shape[1] == len(split_sigmas(split)) == (12 if "shared" in split
                                                                  else 17)
      assert rows[row][1 + 3 * i] == f"{reference_ap(data_root, split, c):.4f}"
      assert json.loads((folder / f"results_{output_tag(split, n)}.json").read_text()
                        ) == reference_results(c, split=split)
      if name == "mipnet":
        assert rows[2][1 + 3 * i] == (
            f"{reference_ap(data_root, split, c, keep_lambda=0):.4f}")
        mipnet_candidates[split] = c
  # Relaxed: the two people of an image share one box, so one crop area per image; tight: the
  # same people, each with a box of their own.
  relaxed = mipnet_candidates["synthetic_val_shared"]
  tight = mipnet_candidates["synthetic_val_shared_tight"]
  assert len(relaxed) == len(tight) > 0
  for image_id in set(relaxed.image_id.tolist()):
    assert len(set(relaxed.area[relaxed.image_id == image_id].tolist())) == 1, image_id
  assert not np.array_equal(relaxed.area, tight.area)


def test_predictions_are_drawn(executed):
  import io

  import matplotlib.image
  _, cells, _, _, _ = executed
  pngs = images(cells["predictions"])
  assert len(pngs) == 1 and pngs[0][:8] == PNG
  height, width = matplotlib.image.imread(io.BytesIO(pngs[0])).shape[:2]
  assert width > 600 and height > 300 * NUM_SHOW        # NUM_SHOW rows of 3 panels


def shared_box_pick(data_root, bundle, baseline) -> tuple:
  """The image the shared-box section shows, by an independent path: the first image (by id)
  of the shared split whose two best bundle poses from the shared box lie nearest (mean
  distance over the labelled limb joints) to two different annotated people, else the first;
  -> (image id, people, baseline poses, MIPNet poses, MIPNet poses with lambda >= 1, two
  different people)."""
  import numpy as np

  from mipnet_jax.data.image import read_image
  gt = json.loads((data_root / "annotations" / ANNOTATIONS["synthetic_val_shared"]).read_text())
  people = {}
  for ann in gt["annotations"]:
    people.setdefault(ann["image_id"], []).append(ann)
  first = None
  for im in sorted(gt["images"], key=lambda im: im["id"]):
    anns = people.get(im["id"], [])
    if not anns:
      continue
    assert len({tuple(a["bbox"]) for a in anns}) == 1, im["id"]   # one box for everybody
    image = read_image(str(data_root / "images" / "val" / im["file_name"]))
    box = np.array(anns[0]["bbox"], np.float32)[None]
    poses, single = bundle(image, box), baseline(image, box)
    nearest = set()
    for pose in poses[:2]:
      far = []
      for a in anns:
        k = np.array(a["keypoints"], np.float32).reshape(-1, 3)
        seen = k[:, 2] > 0
        far.append(np.hypot(*(pose.keypoints[LIMBS, :2][seen] - k[seen, :2]).T).mean()
                   if seen.any() else np.inf)
      nearest.add(int(np.argmin(far)))
    found = (im["id"], len(anns), len(single), len(poses), sum(p.lam > 0 for p in poses),
             len(poses) >= 2 and len(nearest) == 2)
    if found[-1]:
      return found
    first = first or found
  return first


def test_one_shared_box_the_baseline_and_mipnet(executed):
  import io

  import matplotlib.image

  from mipnet_jax import experiments
  from mipnet_jax.serve.predictor import Predictor
  _, cells, workdir, data_root, checkpoint = executed
  out = stdout(cells["shared-box"])
  found = re.fullmatch(r"image (\d+), one box shared by (\d+) people: baseline returned (\d+) "
                       r"pose\(s\), MIPNet merged (\d+) \((\d+) with λ≥1\); (.+)\n", out)
  assert found, out
  *numbers, verdict = found.groups()
  shown = tuple(int(x) for x in numbers) + (verdict == "two different people",)
  assert verdict in ("two different people",
                     "no image where MIPNet finds two different people: the first image")
  # The same image, box and counts through the bundle and the baseline checkpoint here.
  baseline = experiments.experiment("hrnet_w32", "synthetic", (256, 192), "quick,baseline")
  want = shared_box_pick(data_root, Predictor.from_bundle(str(workdir / "bundle_mipnet")),
                         Predictor.from_config(baseline, checkpoint))
  assert shown == want
  # Two people share the box; an N=1 network returns one pose from one box, N=2 one or two.
  # (Two poses from one N=2 box are its lambda=0 and lambda=1; one may be either.)
  assert shown[1] == 2 and shown[2] == 1 and shown[3] in (1, 2)
  assert shown[4] == 1 if shown[3] == 2 else shown[4] <= 1
  pngs = images(cells["shared-box"])
  assert len(pngs) == 1 and pngs[0][:8] == PNG
  height, width = matplotlib.image.imread(io.BytesIO(pngs[0])).shape[:2]
  assert width > height > 200                             # two panels side by side


def test_the_confidence_sweep_table_and_plot(executed):
  from mipnet_jax.eval.candidates import load_candidates
  _, cells, workdir, data_root, _ = executed
  out = stdout(cells["sweep"])
  table = [line.split() for line in out.splitlines() if re.match(r"\s+\d\.\d\d\s", line)]
  assert [float(r[0]) for r in table] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
  thresholds = [float(r[0]) for r in table]
  baseline_ap, baseline_boxes, mipnet_ap, mipnet_boxes = zip(
      *[(r[1], int(r[2]), r[3], int(r[4])) for r in table])
  # Boxes: the simulated detector's boxes of the pairs split scoring at least each threshold,
  # the same for both models.
  detections = json.loads(
      (data_root / "annotations" / "person_detections_val_pairs.json").read_text())
  counts = [sum(d["score"] >= t for d in detections) for t in thresholds]
  assert list(baseline_boxes) == list(mipnet_boxes) == counts
  assert counts[0] == len(detections) and counts[-1] < counts[0]
  # AP: each model's saved candidates (every detection, merged), kept at the threshold, through
  # the reference loop and pycocotools.
  folder = workdir / "eval" / "sweep_synthetic_val_pairs"
  for name, n, shown in (("baseline", 1, baseline_ap), ("mipnet", 2, mipnet_ap)):
    c = load_candidates(str(folder / name / f"candidates_synthetic_val_pairs_det0_N{n}_merged.npz"))
    assert len(c) == n * len(detections)
    assert json.loads((folder / name / f"results_synthetic_val_pairs_det0_N{n}_merged.json"
                       ).read_text()) == reference_results(c)
    assert list(shown) == [
        f"{reference_ap(data_root, 'synthetic_val_pairs', c, min_box_score=t):.4f}"
        for t in thresholds]
  rows = json.loads((folder / "sweep.json").read_text())["rows"]
  assert [r["mipnet_boxes"] for r in rows] == list(mipnet_boxes)
  assert [f"{r['baseline']:.4f}" for r in rows] == list(baseline_ap)
  png = (folder / "sweep.png").read_bytes()
  assert png[:8] == PNG and images(cells["sweep"]) == [png]     # the plot is shown
