"""Checks of the PyTorch reference models in tests/oracles/torch_reference.py (the oracle of
interop/test_torch_import.py).

The state_dict layouts are compared with the official models' layouts in the shared
data folder; parameter counts with the published numbers; plus tiny-input forwards. The
ViTPose oracle (torch_vitpose.py) is also run against our flax ViTPose fed the same weights.
"""

import copy

import numpy as np
import pytest
from conftest import load_oracle

torch = pytest.importorskip(
    "torch", reason="torch not installed (pip install '.[torch]'); PyTorch reference tests skipped")

tr = load_oracle("torch_reference")

MIPNET_SLOTS = (False, False, True, True)
PARAMS = {
    "hrnet_w32": 28_536_113,
    "hrnet_w48": 63_595_745,
    "resnet50": 33_999_697,
    "resnet101": 52_991_825,
    "resnet152": 68_635_473,
}
MIMB_EXTRA = {"hrnet_w32": 67_200, "hrnet_w48": 150_336, "resnet50": 986_496}
# H, W must be multiples of 32 (as in the official code): 64x48 breaks HRNet's
# nearest-upsample fusion (4x3 vs 2x2 -> 4x4) and gives 16x16 heatmaps in SimpleBaseline.
TINY_HW = (128, 96)


def _reference(arch, mipnet):
    if not (tr.shared_data_dir() / "reference").is_dir():
        pytest.skip(f"shared data folder absent ({tr.shared_data_dir()}); set MIPNET_SHARED_DATA")
    ref = tr.reference_layout(arch, mipnet)
    if ref is None:
        pytest.skip(f"no reference layout for {arch} (mipnet={mipnet}) in {tr.shared_data_dir()}")
    return ref


def _assert_layout(model, ref):
    got = tr.state_dict_layout(model)
    assert [k for k, _ in got] == [k for k, _ in ref], "state_dict key names/order differ"
    assert got == ref, "state_dict shapes differ"


@pytest.mark.parametrize("arch", tr.ARCHS)
def test_baseline_layout_and_params(arch):
    ref = _reference(arch, mipnet=False)
    model = tr.build_model(arch)
    _assert_layout(model, ref)
    assert tr.count_trainable(model) == PARAMS[arch]


@pytest.mark.parametrize("arch", sorted(MIMB_EXTRA))
def test_mipnet_layout_and_params(arch):
    ref = _reference(arch, mipnet=True)
    model = tr.build_model(arch, mimb_slots=MIPNET_SLOTS)
    _assert_layout(model, ref)
    assert tr.count_trainable(model) == PARAMS[arch] + MIMB_EXTRA[arch]


@pytest.mark.parametrize("arch", ["hrnet_w32", "resnet50"])
def test_forward_shape(arch):
    torch.manual_seed(0)
    model = tr.build_model(arch, mimb_slots=MIPNET_SLOTS).eval()
    x = torch.randn(2, 3, *TINY_HW)
    lam = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        out = model(x, lam)
    assert out.shape == (2, 17, TINY_HW[0] // 4, TINY_HW[1] // 4)
    assert torch.isfinite(out).all()


def test_init_follows_reference():
    hr = tr.build_model("hrnet_w32", mimb_slots=MIPNET_SLOTS)
    lin = hr.stage3_se.se_layers[3].fc_lambda[3]
    assert abs(lin.weight.std().item() - 1e-3) < 2e-4 and lin.bias.abs().max() == 0
    assert hr.final_layer.bias.abs().max() == 0
    assert abs(hr.stage2[0].branches[0][0].conv1.weight.std().item() - 1e-3) < 1e-4
    sb = tr.build_model("resnet50", mimb_slots=MIPNET_SLOTS)
    # ResNet variant: MIMB Linear layers keep PyTorch's default (kaiming-uniform) init.
    assert sb.layer4_se.se_layers[0].fc[0].weight.std().item() > 1e-2
    assert abs(sb.deconv_layers[0].weight.std().item() - 1e-3) < 1e-4
    assert sb.final_layer.bias.abs().max() == 0


def _well_scaled(model):
    """Re-initialise weights so an eval-mode forward keeps O(1) activations and the
    lambda branch is far from its near-constant init (z ~ 0.5); randomise BN stats."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model.eval()


def _relative_change(model, x):
    lam_a = torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2)
    lam_b = torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)
    with torch.no_grad():
        a, b = model(x, lam_a), model(x, lam_b)
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize("arch", ["hrnet_w32", "resnet50"])
def test_lambda_changes_mipnet_output(arch):
    x = torch.randn(2, 3, *TINY_HW, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    mip = _well_scaled(tr.build_model(arch, mimb_slots=MIPNET_SLOTS))
    assert _relative_change(mip, x) > 1e-2
    # Control: without MIMB the same comparison gives exactly zero, so the check above
    # measures the lambda path and not noise.
    torch.manual_seed(0)
    base = _well_scaled(tr.build_model(arch))
    assert _relative_change(base, x) == 0.0


# ------------------------------------------------------------------------------ ViTPose

VITPOSE_PARAMS = {"vitpose_s": 24_290_577, "vitpose_b": 89_994_513, "vitpose_l": 308_544_785,
                  "vitpose_h": 637_208_849}
VIT_TINY = dict(embed_dim=64, depth=4, num_heads=4, deconv_features=(32, 32))
VIT_HW = (128, 96)          # 8 x 6 patches


@pytest.mark.parametrize("arch", sorted(VITPOSE_PARAMS))
def test_vitpose_layout_and_params(arch):
    ref = _reference(arch, mipnet=False)
    with torch.device("meta"):              # shapes only: ViTPose-H's 637M never allocated
        model = tr.build_model(arch)
    _assert_layout(model, ref)
    assert tr.count_trainable(model) == VITPOSE_PARAMS[arch]


def vit_state_dict(model, seed: int = 0) -> dict:
    """Random weights for every key of ``model`` (numpy float32): He-scaled matrices, norm
    scales near 1, small biases, ``pos_embed`` at the official init's 0.02 so that a small
    input keeps the first LayerNorm's variance small (where its eps shows)."""
    rng, out = np.random.default_rng(seed), {}
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            arr = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("pos_embed"):
            arr = 0.02 * rng.normal(size=shape)
        elif len(shape) >= 2:
            arr = rng.normal(size=shape) * np.sqrt(shape[0] / np.prod(shape))
        elif key.endswith("weight"):
            arr = 1 + 0.1 * rng.normal(size=shape)
        else:
            arr = 0.02 * rng.normal(size=shape)
        out[key] = arr.astype(np.float32)
    return out


def _vit_pair(mimb_slots, num_instances):
    """(our tiny ViTPose, its variables, the torch oracle) holding the same random weights."""
    from mipnet_jax.interop import torch_import
    from mipnet_jax.models import build_model
    ours = build_model(dict(name="vitpose", mimb_slots=mimb_slots, **VIT_TINY), num_instances)
    tm = tr.TopDownViTPose(img_size=VIT_HW, mimb_slots=mimb_slots, **VIT_TINY).eval()
    state_dict = vit_state_dict(tm)
    missing, unexpected = tm.load_state_dict({k: torch.from_numpy(v) for k, v in
                                              state_dict.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    variables = torch_import.from_state_dict(state_dict, ours, VIT_HW, kind="pose")
    return ours, variables, tm


def _torch_heatmaps(tm, images, lam):
    with torch.no_grad():
        out = tm(torch.from_numpy(images.transpose(0, 3, 1, 2)), torch.from_numpy(lam))
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("mimb_slots,n", [((False,) * 4, 1), ((False, False, True, True), 2)],
                         ids=["vitpose", "mipnet_vitpose_n2"])
def test_vitpose_heatmaps_match_torch_oracle(mimb_slots, n):
    from mipnet_jax.models import encode_lambda
    model, variables, tm = _vit_pair(mimb_slots, n)
    images = np.random.default_rng(1).normal(size=(2, *VIT_HW, 3)).astype(np.float32)
    lam = np.array(encode_lambda(np.array([0, 1]), model.lambda_dim))      # lambda = 0 and 1
    eps_slip = copy.deepcopy(tm)                 # control: LayerNorm eps 1e-5 instead of 1e-6
    for m in eps_slip.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-5
    for gain in (1.0, 0.01):                     # 0.01: LayerNorm variances near its eps
        x = images * np.float32(gain)
        ours = np.asarray(model.apply(variables, x, lam, train=False))       # eager
        ref = _torch_heatmaps(tm, x, lam)
        assert ours.shape == ref.shape == (2, VIT_HW[0] // 4, VIT_HW[1] // 4, 17)
        scale = ref.std()
        assert scale > 0.05 and np.abs(ours - ref).max() <= 1e-4 * scale, gain
        if gain == 0.01:                         # the comparison would see an eps slip
            assert np.abs(_torch_heatmaps(eps_slip, x, lam) - ref).max() > 1e-3 * scale
    if model.has_mimb:                           # the comparison covers the lambda path
        same = np.repeat(images[:1], 2, axis=0)
        ref = _torch_heatmaps(tm, same, lam)
        assert np.abs(ref[0] - ref[1]).max() > 1e-2 * ref.std()
