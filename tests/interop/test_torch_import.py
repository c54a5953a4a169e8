"""Official PyTorch weights <-> our variables (mipnet_jax/interop/torch_import.py; the name
rules themselves: tests/models/test_torch_names.py).

Full-size layouts come from jax.eval_shape (no compile); imports run on quick-config models
with conftest's random_variables. The torch checks feed the same weights to the oracle
tests/oracles/torch_reference.py (official widths) at a 64x64 input: the smallest that
HRNet's four branches (1/4..1/32) and the reference accept.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, assert_trees_equal, load_oracle, random_variables

from mipnet_jax import checkpoints, experiments
from mipnet_jax.interop import torch_import
from mipnet_jax.models import torch_names
from mipnet_jax.models import build_model, encode_lambda
from mipnet_jax.models.variables import abstract_variables, fresh_variables

REPO = REPO_ROOT
# (our arch, config arg, reference file, reference model). Baselines are N=1; the authors'
# MIPNet layout is our default MIPNet config: N=2, one-hot lambda (lambda_dim 2), MIMB slots
# (False, False, True, True) = their SE_MODULES, reduction 4.
LAYOUTS = [
    ("hrnet_w32", "baseline", "official_state_dict_keys.json", "hrnet_w32"),
    ("hrnet_w48", "baseline", "official_state_dict_keys.json", "hrnet_w48"),
    ("sbl_r50", "baseline", "official_state_dict_keys.json", "resnet50_simple_baseline"),
    ("sbl_r101", "baseline", "official_state_dict_keys.json", "resnet101_simple_baseline"),
    ("sbl_r152", "baseline", "official_state_dict_keys.json", "resnet152_simple_baseline"),
    ("hrnet_w32", "", "mipnet_official_state_dict_keys.json", "mipnet_hrnet_w32"),
    ("hrnet_w48", "", "mipnet_official_state_dict_keys.json", "mipnet_hrnet_w48"),
    ("sbl_r50", "", "mipnet_official_state_dict_keys.json", "mipnet_resnet50_simple_baseline"),
]
TORCH_HW = (64, 64)   # == torch_import.PROBE_HW, the default image_hw
# Fresh inits in tests: RBG keys compile their random ops far faster than threefry on CPU.
RNG = functools.partial(jax.random.key, impl="rbg")


def make_model(arch: str, arg: str = "", **model_fields):
  cfg = experiments.experiment(arch, "coco", (256, 192), arg)
  cfg.model.update(model_fields)
  return build_model(cfg.model, cfg.num_instances)


def abstract(model):
  return abstract_variables(model, TORCH_HW)


def variables_of(model, seed: int = 0):
  """conftest's random_variables at the probe size (the variables do not depend on it)."""
  return random_variables(model, TORCH_HW, seed)


def reference_layout(shared_data, fname: str, name: str) -> list[tuple[str, tuple]]:
  path = shared_data / "reference" / fname
  if not path.is_file():
    pytest.skip(f"reference layout {path} absent")
  return [(k, tuple(s)) for k, s in json.loads(path.read_text())["models"][name]]


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("arch,arg,fname,name", LAYOUTS,
                         ids=[f"{r[3]}" for r in LAYOUTS])
def test_layout_equals_official(shared_data, arch, arg, fname, name):
  ref = reference_layout(shared_data, fname, name)
  got = torch_import.torch_layout(make_model(arch, arg))
  assert list(got) == [k for k, _ in ref], "torch key names / order differ"
  assert list(got.items()) == ref, "torch shapes differ"


def test_authors_n3_layout_needs_their_binary_lambda_code(shared_data):
  ref = dict(reference_layout(shared_data, "mipnet_official_state_dict_keys.json",
                              "mipnet_resnet50_simple_baseline"))
  one_hot = torch_import.torch_layout(make_model("sbl_r50", "n=3"))
  assert one_hot["layer3_se.se_layers.0.fc_lambda.0.weight"] == (128, 3)   # authors': 2
  assert torch_import.torch_layout(make_model("sbl_r50", "n=3", lambda_code="binary")) == ref


# -------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch,arg", [("hrnet_w32", "baseline"), ("sbl_r50", "baseline"),
                                      ("hrnet_w32", ""), ("hrnet_w48", ""), ("sbl_r50", "")])
def test_round_trip_is_exact(arch, arg):
  model = make_model(arch, arg)
  variables = variables_of(model)
  state_dict = torch_import.to_state_dict(variables)
  back, report = torch_import.import_state_dict(state_dict, model, kind="pose")
  assert report.kind == "pose" and not report.fresh and not report.skipped
  assert_trees_equal(back, variables)


# ------------------------------------------------------------------------------ errors


def test_unknown_missing_and_misshaped_keys_in_one_error():
  model = make_model("sbl_r50", "quick,baseline")
  state_dict = torch_import.to_state_dict(variables_of(model))
  state_dict["layer9.0.conv1.weight"] = np.zeros((1,), np.float32)          # unknown
  del state_dict["layer2.1.bn2.running_var"]                                # missing
  state_dict["final_layer.weight"] = np.zeros((17, 3, 1, 1), np.float32)    # mis-shaped
  with pytest.raises(torch_import.StateDictError) as e:
    torch_import.from_state_dict(state_dict, model, source="weights.pth")
  msg = str(e.value)
  assert msg.startswith("weights.pth: pose weights do not fit the model")
  assert "1 unknown: layer9.0.conv1.weight" in msg
  assert "1 missing: layer2.1.bn2.running_var" in msg
  assert "1 mis-shaped: final_layer.weight (17, 3, 1, 1) (model (17, 16, 1, 1))" in msg


def test_error_listing_is_truncated():
  model = make_model("sbl_r50", "quick,baseline")
  with pytest.raises(torch_import.StateDictError, match=r"missing: conv1.weight, .* and \d+ more"):
    torch_import.from_state_dict({"final_layer.weight": np.zeros((17, 16, 1, 1))}, model)


def test_to_state_dict_checks_the_model():
  variables = variables_of(make_model("sbl_r50", "quick,baseline"))
  with pytest.raises(torch_import.StateDictError, match=r"20 missing: layer3_se\.se_layers"):
    torch_import.to_state_dict(variables, make_model("sbl_r50", "quick"))


# ----------------------------------------------------------------------- backbone files

EXTRAS = {  # what ImageNet files carry beyond our backbones (their shapes do not matter)
    "hrnet_w32": ["incre_modules.0.0.conv1.weight", "downsamp_modules.0.0.weight",
                  "final_layer.0.weight", "final_layer.1.running_mean", "classifier.weight",
                  "classifier.bias", "stage4.2.fuse_layers.1.0.0.0.weight",
                  "stage4.2.fuse_layers.3.2.1.running_var"],
    "sbl_r50": ["fc.weight", "fc.bias"],
}


def shapes_only(layout: dict[str, tuple]) -> dict[str, np.ndarray]:
  """Zero-memory stand-ins for a state dict's arrays (the checks read only shapes)."""
  return {k: np.broadcast_to(np.float32(0), s) for k, s in layout.items()}


@pytest.mark.parametrize("arch", sorted(EXTRAS))
def test_imagenet_file_is_recognised_as_backbone(arch):
  model = make_model(arch)                          # MIPNet: MIMBs are head keys too
  layout = torch_import.torch_layout(model)
  head = [k for k in layout if torch_names.matches_any(k, torch_names.HEAD_PATTERNS)]
  imagenet = shapes_only({k: s for k, s in layout.items() if k not in head})
  imagenet |= {k: np.zeros((3,), np.float32) for k in EXTRAS[arch]}
  imagenet["bn1.num_batches_tracked"] = np.array(7)
  report = torch_import.check_state_dict(imagenet, model, source="imagenet.pth")
  assert report.kind == "backbone" and report.ignored == 1
  assert report.fresh == head and sorted(report.skipped) == sorted(EXTRAS[arch])
  assert len(report.loaded) == len(layout) - len(head)
  with pytest.raises(torch_import.StateDictError) as e:
    torch_import.check_state_dict(imagenet, model, kind="pose", source="imagenet.pth")
  assert f"{len(EXTRAS[arch])} unknown" in str(e.value) and f"{len(head)} missing" in str(e.value)
  del imagenet["layer1.0.conv1.weight"]             # a backbone key stays required
  with pytest.raises(torch_import.StateDictError, match=r"1 missing: layer1\.0\.conv1\.weight"):
    torch_import.check_state_dict(imagenet, model)


def test_backbone_import_keeps_the_head_fresh(caplog):
  model = make_model("sbl_r50", "quick")
  full = torch_import.to_state_dict(variables_of(model))
  head = [k for k in full if torch_names.matches_any(k, torch_names.HEAD_PATTERNS)]
  backbone = {f"module.{k}": v for k, v in full.items() if k not in head}   # DataParallel
  backbone |= {"fc.weight": np.zeros((1000, 128), np.float32), "fc.bias": np.zeros(1000)}
  with caplog.at_level(logging.INFO, logger="mipnet_jax.interop.torch_import"):
    variables, report = torch_import.import_state_dict(
        backbone, model, rng=RNG(3), source="resnet50.pth")
  assert report.fresh == head and report.skipped == ["fc.weight", "fc.bias"]
  assert "resnet50.pth: backbone weights" in caplog.text
  assert "skipped (not used by the model): fc.weight, fc.bias" in caplog.text
  got = torch_import.to_state_dict(variables)
  fresh = torch_import.to_state_dict(fresh_variables(model, TORCH_HW, RNG(3)))
  for k in full:
    np.testing.assert_array_equal(got[k], fresh[k] if k in head else full[k], err_msg=k)
  # The model's init, not the file: BN (1, 0, 0, 1), conv N(0, 0.001), zero conv bias.
  assert (got["deconv_layers.1.running_var"] == 1).all() and not got["final_layer.bias"].any()
  assert got["deconv_layers.0.weight"].std() == pytest.approx(1e-3, rel=0.05)
  assert abs(got["deconv_layers.0.weight"].mean()) < 1e-4


def test_allow_fresh_starts_mimbs_and_a_reshaped_head_fresh():
  """MIPNet from a baseline pose file (as the authors fine-tune), here also from 17 COCO
  keypoints to 14 (CrowdPose): MIMBs and final_layer start fresh only when allowed."""
  baseline = torch_import.to_state_dict(variables_of(make_model("sbl_r50", "quick,baseline")))
  mipnet = make_model("sbl_r50", "quick", num_keypoints=14)
  with pytest.raises(torch_import.StateDictError) as e:
    torch_import.check_state_dict(baseline, mipnet)
  assert "20 missing: layer3_se.se_layers" in str(e.value)
  assert "2 mis-shaped: final_layer.weight (17, 16, 1, 1) (model (14, 16, 1, 1))" in str(e.value)
  variables, report = torch_import.import_state_dict(
      baseline, mipnet, allow_fresh=("mimb", r"final_layer\."), rng=RNG(0))
  assert report.kind == "pose" and report.skipped == ["final_layer.weight", "final_layer.bias"]
  assert [k.split(".")[0] for k in report.fresh] == ["final_layer"] * 2 + ["layer3_se"] * 10 + [
      "layer4_se"] * 10
  assert variables["params"]["final_layer"]["kernel"].shape == (1, 1, 16, 14)
  np.testing.assert_array_equal(variables["params"]["layer2"]["block0"]["conv1"]["kernel"],
                                np.transpose(baseline["layer2.0.conv1.weight"], (2, 3, 1, 0)))


# ------------------------------------------------------------------------------- files


def test_npz_route_and_pickle_refusal(tmp_path):
  model = make_model("hrnet_w32", "quick")
  variables = variables_of(model)
  path = torch_import.write_npz(torch_import.to_state_dict(variables), str(tmp_path / "w.npz"))
  back = torch_import.from_state_dict(torch_import.read_state_dict(path), model)
  assert_trees_equal(back, variables)
  np.savez(tmp_path / "evil.npz", w=np.array([{"x": 1}], dtype=object))
  with pytest.raises(torch_import.StateDictError, match="without unpickling"):
    torch_import.read_state_dict(str(tmp_path / "evil.npz"))
  with pytest.raises(torch_import.StateDictError, match="unsupported weights file"):
    torch_import.read_state_dict(str(tmp_path / "w.h5"))


def test_pth_without_torch_suggests_npz(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)          # import torch -> ImportError
  with pytest.raises(torch_import.StateDictError, match=r"needs torch.*\.npz"):
    torch_import.read_state_dict(str(tmp_path / "w.pth"))


def test_convert_writes_a_loadable_checkpoint(tmp_path):
  cfg = experiments.experiment("sbl_r50", "coco", (256, 192), "quick")
  model = build_model(cfg.model, cfg.num_instances)
  variables = variables_of(model)
  npz = torch_import.write_npz(torch_import.to_state_dict(variables), str(tmp_path / "w.npz"))
  report = torch_import.convert(npz, cfg, str(tmp_path / "ckpt"))
  assert report.kind == "pose" and len(report.loaded) == 302 and not report.fresh
  assert_trees_equal(checkpoints.load_variables(str(tmp_path / "ckpt"), abstract(model)),
                     variables)


def test_script_converts_npz(tmp_path):
  cfg = experiments.experiment("sbl_r50", "coco", (256, 192), "quick,baseline")
  model = build_model(cfg.model, cfg.num_instances)
  variables = variables_of(model)
  npz = torch_import.write_npz(torch_import.to_state_dict(variables), str(tmp_path / "w.npz"))
  out = tmp_path / "ckpt"
  proc = subprocess.run(
      [sys.executable, str(REPO / "scripts" / "convert_torch_checkpoint.py"),
       f"--config={REPO / 'configs' / 'sbl_r50_coco_256x192.py'}:quick,baseline",
       f"--input={npz}", f"--output={out}", "--kind=pose"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "pose weights, 282 arrays loaded, 0 fresh, 0 skipped" in proc.stdout
  assert_trees_equal(checkpoints.load_variables(str(out), abstract(model)), variables)


# ------------------------------------------------------------------------ against torch


@pytest.fixture(scope="module")
def torch_reference():
  torch = pytest.importorskip("torch", reason="torch not installed; torch comparison skipped")
  threads = torch.get_num_threads()
  torch.set_num_threads(1)      # tiny inputs: extra threads only contend with JAX's
  yield load_oracle("torch_reference")
  torch.set_num_threads(threads)


@pytest.mark.parametrize("arch,arg,torch_arch", [
    ("hrnet_w32", "baseline", "hrnet_w32"), ("sbl_r50", "baseline", "resnet50"),
    ("hrnet_w32", "", "hrnet_w32")], ids=["hrnet_w32", "sbl_r50", "mipnet_hrnet_w32"])
def test_heatmaps_match_torch_reference(torch_reference, arch, arg, torch_arch):
  import torch
  model = make_model(arch, arg)
  variables = variables_of(model)
  tm = torch_reference.build_model(torch_arch, mimb_slots=model.mimb_slots).eval()
  tm.load_state_dict({k: torch.from_numpy(v) for k, v in
                      torch_import.to_state_dict(variables).items()}, strict=True)
  images = np.random.default_rng(1).normal(size=(2, *TORCH_HW, 3)).astype(np.float32)
  lam = np.array(encode_lambda(np.array([0, 1]), model.lambda_dim))     # lambda = 0 and 1
  ours = np.asarray(model.apply(variables, images, lam, train=False))    # eager: no compile
  with torch.no_grad():
    ref = tm(torch.from_numpy(images.transpose(0, 3, 1, 2)), torch.from_numpy(lam)).numpy()
  ref = ref.transpose(0, 2, 3, 1)                                        # [B, K, h, w] -> NHWC
  assert ours.shape == ref.shape == (2, TORCH_HW[0] // 4, TORCH_HW[1] // 4, 17)
  scale = np.abs(ref).max()
  assert scale > 0 and np.abs(ours - ref).max() <= 1e-4 * scale
  if model.has_mimb:                    # the comparison covers the lambda path
    assert np.abs(ref[0] - ref[1]).max() > 1e-2 * scale


class NotAWeight:
  """Pickled by reference: torch.load(weights_only=True) must refuse it."""


def test_pth_route(torch_reference, tmp_path):
  import torch
  model = make_model("sbl_r50", "quick")
  variables = variables_of(model)
  state_dict = {f"module.{k}": torch.from_numpy(v)
                for k, v in torch_import.to_state_dict(variables).items()}
  state_dict["module.bn1.num_batches_tracked"] = torch.tensor(5)
  torch.save({"state_dict": state_dict, "epoch": 3}, tmp_path / "checkpoint.pth")
  read = torch_import.read_state_dict(str(tmp_path / "checkpoint.pth"))
  assert_trees_equal(torch_import.from_state_dict(read, model), variables)
  # The pre-1.6 (non-zip) format of e.g. torchvision's resnet50-19c8e357.pth.
  torch.save(state_dict, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
  read = torch_import.read_state_dict(str(tmp_path / "legacy.pth"))
  assert_trees_equal(torch_import.from_state_dict(read, model), variables)
  torch.save({"conv1.weight": NotAWeight()}, tmp_path / "evil.pth")
  with pytest.raises(torch_import.StateDictError, match="weights_only=True"):
    torch_import.read_state_dict(str(tmp_path / "evil.pth"))


# ------------------------------------------------------- HRNet's configuration space

# An official-layout HRNet beyond the published yamls: per-branch NUM_BLOCKS (stage 4
# [2, 1, 1, 1]), two stage-4 modules (the last single-scale), NUM_CHANNELS not C * 2^i.
HRNET_SPACE = dict(width=8, stem_width=16, stage_modules=(1, 1, 2),
                   num_blocks=((1, 2), (1, 1, 3), (2, 1, 1, 1)), branch_channels=(8, 12, 20, 24))


def official_hrnet_keys(stem: int, channels, modules, blocks, joints: int = 17):
  """[(key, shape)] of pose_hrnet's state_dict (without num_batches_tracked) in registration
  order, written from the module structure of the official lib/models/pose_hrnet.py, not from
  torch_names: conv1, bn1, conv2, bn2, layer1 (4 Bottlenecks), then for s = 2, 3, 4
  transition{s-1} (_make_transition_layer) and stage{s} (HighResolutionModule: branches,
  fuse_layers), final_layer. ``channels`` is STAGE4.NUM_CHANNELS, ``blocks`` NUM_BLOCKS."""
  keys = []

  def conv_bn(name, bn_name, cout, cin, k):
    keys.append((f"{name}.weight", (cout, cin, k, k)))
    keys.extend((f"{bn_name}.{leaf}", (cout,))
                for leaf in ("weight", "bias", "running_mean", "running_var"))

  conv_bn("conv1", "bn1", stem, 3, 3)
  conv_bn("conv2", "bn2", stem, stem, 3)
  for k in range(4):                   # Bottleneck(inplanes, 64); the first one projects
    p, cin = f"layer1.{k}", stem if k == 0 else 4 * stem
    conv_bn(f"{p}.conv1", f"{p}.bn1", stem, cin, 1)
    conv_bn(f"{p}.conv2", f"{p}.bn2", stem, stem, 3)
    conv_bn(f"{p}.conv3", f"{p}.bn3", 4 * stem, stem, 1)
    if k == 0:
      conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", 4 * stem, cin, 1)
  pre = [4 * stem]
  for s, n_mod, nb in zip((2, 3, 4), modules, blocks):
    cur = list(channels[:s])
    for i, c in enumerate(cur):
      t = f"transition{s - 1}.{i}"
      if i < len(pre) and c != pre[i]:
        conv_bn(f"{t}.0", f"{t}.1", c, pre[i], 3)
      for j in range(i + 1 - len(pre)):         # new branches: stride-2 steps
        out = c if j == i - len(pre) else pre[-1]
        conv_bn(f"{t}.{j}.0", f"{t}.{j}.1", out, pre[-1], 3)
    for m in range(n_mod):
      p = f"stage{s}.{m}"
      for b, c in enumerate(cur):
        for k in range(nb[b]):
          q = f"{p}.branches.{b}.{k}"
          conv_bn(f"{q}.conv1", f"{q}.bn1", c, c, 3)
          conv_bn(f"{q}.conv2", f"{q}.bn2", c, c, 3)
      for i in range(1 if s == 4 and m == n_mod - 1 else len(cur)):
        for j in range(len(cur)):
          f = f"{p}.fuse_layers.{i}.{j}"
          if j > i:
            conv_bn(f"{f}.0", f"{f}.1", cur[i], cur[j], 1)
          for k in range(i - j):
            out = cur[i] if k == i - j - 1 else cur[j]
            conv_bn(f"{f}.{k}.0", f"{f}.{k}.1", out, cur[j], 3)
    pre = cur
  return keys + [("final_layer.weight", (joints, channels[0], 1, 1)),
                 ("final_layer.bias", (joints,))]


def test_official_key_generator_reproduces_the_reference_file(shared_data):
  """The generator against the official W32 state_dict layout (its independent check)."""
  ref = reference_layout(shared_data, "official_state_dict_keys.json", "hrnet_w32")
  assert official_hrnet_keys(64, (32, 64, 128, 256), (1, 4, 3), ((4,) * 2, (4,) * 3, (4,) * 4)
                             ) == ref


@pytest.mark.parametrize("fields", [HRNET_SPACE, {**HRNET_SPACE, "branch_channels": ()},
                                    dict(width=48, num_blocks=((4, 4), (4, 4, 4), (2, 1, 1, 1)))],
                         ids=["space", "space_width_only", "w48_stage4_2111"])
def test_hrnet_layout_equals_official_structure(fields):
  model = make_model("hrnet_w32", "baseline", **fields)
  expected = official_hrnet_keys(model.stem_width, model.channels, model.stage_modules,
                                 model.blocks)
  assert list(torch_import.torch_layout(model).items()) == expected


def official_state_dict(keys, seed: int = 0) -> dict[str, np.ndarray]:
  """Conditioned random weights for ``keys``: He-scaled convs, BN near identity, and the
  official files' num_batches_tracked buffers."""
  rng, out = np.random.default_rng(seed), {}
  for k, shape in keys:
    if k.endswith("running_var"):
      out[k] = 1 + 0.2 * rng.random(shape)
    elif len(shape) == 4:
      out[k] = rng.normal(size=shape) * np.sqrt(1 / np.prod(shape[1:]))
    else:                                        # BN scale near 1, other vectors near 0
      out[k] = float(k.endswith(".weight")) + 0.1 * rng.normal(size=shape)
    if k.endswith("running_var"):
      out[k.replace("running_var", "num_batches_tracked")] = np.array(100)
  return {k: v.astype(v.dtype if v.ndim == 0 else np.float32) for k, v in out.items()}


@pytest.fixture(scope="module")
def hrnet_space():
  """(model, official state dict, imported variables, images, our heatmaps): HRNET_SPACE."""
  model = make_model("hrnet_w32", "baseline", **HRNET_SPACE)
  state_dict = official_state_dict(official_hrnet_keys(
      16, HRNET_SPACE["branch_channels"], HRNET_SPACE["stage_modules"], HRNET_SPACE["num_blocks"]))
  variables, report = torch_import.import_state_dict(state_dict, model, kind="pose")
  images = np.random.default_rng(1).normal(size=(2, *TORCH_HW, 3)).astype(np.float32)
  ours = np.asarray(model.apply(variables, images, np.zeros((2, 1), np.float32), train=False))
  return model, state_dict, variables, report, images, ours


def test_hrnet_per_branch_blocks_import_official_weights_and_run(hrnet_space):
  model, state_dict, variables, report, _, ours = hrnet_space
  n_bn = sum(k.endswith("num_batches_tracked") for k in state_dict)
  assert report.kind == "pose" and not report.fresh and not report.skipped
  assert len(report.loaded) == len(state_dict) - n_bn and report.ignored == n_bn
  block = variables["params"]["stage4"]["module1"]["branch0_block1"]       # [2, 1, 1, 1]
  np.testing.assert_array_equal(block["conv2"]["kernel"], np.transpose(
      state_dict["stage4.1.branches.0.1.conv2.weight"], (2, 3, 1, 0)))
  np.testing.assert_array_equal(variables["batch_stats"]["stage3"]["module0"]["branch2_block2"][
      "bn1"]["var"], state_dict["stage3.0.branches.2.2.bn1.running_var"])
  assert ours.shape == (2, TORCH_HW[0] // 4, TORCH_HW[1] // 4, 17)
  assert np.isfinite(ours).all() and np.abs(ours).max() > 0.1


def test_hrnet_per_branch_blocks_match_torch_reference(torch_reference, hrnet_space):
  import torch
  _, state_dict, _, _, images, ours = hrnet_space
  tm = torch_reference.PoseHRNet(8, stem=16, num_modules=HRNET_SPACE["stage_modules"],
                                 num_blocks=HRNET_SPACE["num_blocks"],
                                 channels=HRNET_SPACE["branch_channels"]).eval()
  tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()},
                     strict=True)                    # the generator's names are torch's
  with torch.no_grad():
    ref = tm(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  scale = np.abs(ref).max()
  assert scale > 0.1 and np.abs(ours - ref).max() <= 1e-4 * scale
