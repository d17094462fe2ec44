"""Tests of tdpcr.models: shapes, PGF ablation switches, PEFT, sizes against the paper."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tdpcr.benchmarks.complexity import count_params_macs, paper_sizes
from tdpcr.models import (
    TDPCR,
    DSen2CR,
    NAFBlock,
    PromptGuidedFusion,
    attach_segmentation_head,
    count_parameters,
    create_model,
    list_models,
    set_trainable,
    trainable_parameters,
)

#: A TDP-CR small enough for millisecond forwards; same structure as the paper's.
TINY: dict = {
    "width": 8,
    "enc_blocks": (1, 1, 1, 1),
    "dec_blocks": (1, 1, 1, 1),
    "prompt_hidden": 8,
    "pgf_min_hidden": 4,
    "psi_ratio": 1.0,
}


def _inputs(b: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 13, h, w, generator=g), torch.rand(b, 2, h, w, generator=g)


def _tiny(**kwargs: object) -> TDPCR:
    torch.manual_seed(0)
    return TDPCR(**{**TINY, **kwargs})


def _randomise_residual_scales(model: torch.nn.Module) -> None:
    """NAFBlocks start as the identity (beta = gamma = 0); make them do something."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, NAFBlock):
            m.beta.data = torch.randn(m.beta.shape, generator=g)
            m.gamma.data = torch.randn(m.gamma.shape, generator=g)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("h", "w"), [(48, 48), (64, 64), (48, 80), (80, 32)])
def test_tdpcr_output_shapes(h: int, w: int) -> None:
    model = _tiny(num_classes=5)
    optical, sar = _inputs(2, h, w)
    out = model(optical, sar, return_prompt=True, return_weights=True)
    assert out["image"].shape == (2, 13, h, w)
    assert out["logits"].shape == (2, 5, h, w)
    assert out["prompt"].shape == (2, 8, h, w)
    weights = out["weights"]
    assert len(weights) == 4
    for level, (a, c) in enumerate(zip(weights, model.stage_channels, strict=True)):
        assert a.shape == (2, 2, c, h // 2**level, w // 2**level)


def test_tdpcr_cr_only_has_no_logits_and_optional_outputs_off() -> None:
    out = _tiny()(*_inputs())
    assert set(out) == {"image"}


def test_tdpcr_rejects_size_not_divisible_by_16() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        _tiny()(*_inputs(1, 40, 48))


def test_tdpcr_rejects_mismatched_sar() -> None:
    optical, _ = _inputs(1, 32, 32)
    with pytest.raises(ValueError, match="SAR"):
        _tiny()(optical, torch.rand(1, 2, 16, 32))


def test_tdpcr_is_identity_plus_ending_at_init() -> None:
    """Global residual: with the ending conv zeroed, the output is the cloudy input."""
    model = _tiny()
    torch.nn.init.zeros_(model.ending.weight)
    torch.nn.init.zeros_(model.ending.bias)
    optical, sar = _inputs()
    torch.testing.assert_close(model(optical, sar)["image"], optical)


def test_dsen2cr_shapes_and_long_skip() -> None:
    model = DSen2CR(features=8, num_blocks=2)
    optical, sar = _inputs(2, 20, 28)
    out = model(optical, sar)["image"]
    assert out.shape == (2, 13, 20, 28)
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    torch.testing.assert_close(model(optical, sar)["image"], optical)


# --------------------------------------------------------------------------- PGF


def _pgf_inputs(seed: int, c: int = 16, h: int = 8, w: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(2, k, h, w, generator=g) for k in (c, c, 8))


@pytest.mark.parametrize("mode", ["both", "global", "local"])
def test_pgf_weights_sum_to_one(mode: str) -> None:
    torch.manual_seed(0)
    pgf = PromptGuidedFusion(16, 8, mode=mode, min_hidden=4)
    f_o, f_s, prompt = _pgf_inputs(0)
    out, weights = pgf(f_o, f_s, prompt)
    assert out.shape == f_o.shape
    assert weights.shape == (2, 2, 16, 8, 8)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 16, 8, 8))


def test_pgf_resizes_prompt_bilinearly() -> None:
    torch.manual_seed(0)
    pgf = PromptGuidedFusion(16, 8, mode="local", min_hidden=4)
    f_o, f_s, _ = _pgf_inputs(0)
    prompt = torch.randn(2, 8, 32, 32)
    _, weights = pgf(f_o, f_s, prompt)
    small = torch.nn.functional.interpolate(prompt, size=(8, 8), mode="bilinear")
    torch.testing.assert_close(weights, pgf(f_o, f_s, small)[1])


def test_model_weights_sum_to_one() -> None:
    out = _tiny()(*_inputs(), return_weights=True)
    for a in out["weights"]:
        torch.testing.assert_close(a.sum(dim=1), torch.ones_like(a[:, 0]))


def test_pgf_global_mode_ignores_prompt() -> None:
    f_o, f_s, p1 = _pgf_inputs(0)
    p2 = _pgf_inputs(1)[2]
    torch.manual_seed(0)
    pgf = PromptGuidedFusion(16, 8, mode="global", min_hidden=4)
    assert pgf.local_branch is None
    out1, w1 = pgf(f_o, f_s, p1)
    out2, w2 = pgf(f_o, f_s, p2)
    out3, _ = pgf(f_o, f_s, None)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(out1, out3)
    torch.testing.assert_close(w1, w2)
    # The same check must fail when the local branch is on.
    both = PromptGuidedFusion(16, 8, mode="both", min_hidden=4)
    assert not torch.allclose(both(f_o, f_s, p1)[0], both(f_o, f_s, p2)[0])


def test_pgf_local_mode_ignores_global_statistics() -> None:
    """In local mode the weights depend on the prompt only, not on GAP(F_o + F_s)."""
    f_o, f_s, prompt = _pgf_inputs(0)
    g_o, g_s, _ = _pgf_inputs(1)
    torch.manual_seed(0)
    local = PromptGuidedFusion(16, 8, mode="local", min_hidden=4)
    assert local.global_branch is None
    torch.testing.assert_close(local(f_o, f_s, prompt)[1], local(g_o, g_s, prompt)[1])
    # Changing only the mean of F_s (what GAP sees) must move the weights when global is on.
    both = PromptGuidedFusion(16, 8, mode="both", min_hidden=4)
    assert not torch.allclose(both(f_o, f_s, prompt)[1], both(f_o, f_s + 3.0, prompt)[1])
    torch.testing.assert_close(local(f_o, f_s, prompt)[1], local(f_o, f_s + 3.0, prompt)[1])


def test_pgf_local_mode_needs_prompt() -> None:
    pgf = PromptGuidedFusion(16, 8, mode="local", min_hidden=4)
    f_o, f_s, _ = _pgf_inputs(0)
    with pytest.raises(ValueError, match="prompt"):
        pgf(f_o, f_s, None)


def test_pgf_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="both"):
        PromptGuidedFusion(16, 8, mode="neither")  # type: ignore[arg-type]


def test_model_local_mode_weights_do_not_see_sar() -> None:
    """Whole model: in local mode, changing only the SAR input leaves every weight unchanged."""
    optical, sar = _inputs(seed=0)
    sar2 = _inputs(seed=1)[1]
    local = _tiny(pgf_mode="local")
    _randomise_residual_scales(local)
    w1 = local(optical, sar, return_weights=True)["weights"]
    w2 = local(optical, sar2, return_weights=True)["weights"]
    for a, b in zip(w1, w2, strict=True):
        torch.testing.assert_close(a, b)
    both = _tiny(pgf_mode="both")
    _randomise_residual_scales(both)
    v1 = both(optical, sar, return_weights=True)["weights"]
    v2 = both(optical, sar2, return_weights=True)["weights"]
    assert all(not torch.allclose(a, b) for a, b in zip(v1, v2, strict=True))


def test_model_global_mode_has_no_prompt() -> None:
    model = _tiny(pgf_mode="global")
    assert model.prompt_generator is None
    out = model(*_inputs(), return_prompt=True, return_weights=True)
    assert out["prompt"] is None
    # Global weights are constant over space.
    for a in out["weights"]:
        torch.testing.assert_close(a, a[..., :1, :1].expand_as(a))


# --------------------------------------------------------------------------- PEFT


def _group_numel(*modules: torch.nn.Module | None) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def test_attach_head_keeps_weights() -> None:
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optical, sar = _inputs()
    image_before = model(optical, sar)["image"]
    assert attach_segmentation_head(model, num_classes=7, head_width=4) is model
    after = model.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)
    assert any(k.startswith("seg_head.") for k in after)
    out = model(optical, sar)
    torch.testing.assert_close(out["image"], image_before)
    assert out["logits"].shape == (2, 7, 32, 32)
    with pytest.raises(ValueError, match="already"):
        attach_segmentation_head(model, 7)


def test_trainable_parameter_counts() -> None:
    model = _tiny(num_classes=7)
    total = count_parameters(model)
    head = _group_numel(model.seg_head)
    peft = _group_numel(model.prompt_generator, model.pgf, model.seg_head)

    names = set_trainable(model, "peft")
    assert count_parameters(model, trainable_only=True) == peft
    assert all(n.split(".")[0] in {"prompt_generator", "pgf", "seg_head"} for n in names)
    assert 0 < peft < total / 5

    set_trainable(model, "fpft")
    assert count_parameters(model, trainable_only=True) == total

    names = set_trainable(model, "reconstruction")
    assert count_parameters(model, trainable_only=True) == total - head
    assert not any(n.startswith("seg_head.") for n in names)

    # trainable_parameters() reports without changing requires_grad.
    pairs = trainable_parameters(model, "peft")
    assert sum(p.numel() for _, p in pairs) == peft
    assert count_parameters(model, trainable_only=True) == total - head

    with pytest.raises(ValueError, match="peft"):
        set_trainable(model, "lora")


def test_peft_gradients_reach_only_trainable_groups() -> None:
    model = _tiny(num_classes=3)
    _randomise_residual_scales(model)
    names = set(set_trainable(model, "peft"))
    optical, sar = _inputs()
    out = model(optical, sar)
    labels = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    loss = (out["image"] - optical).abs().mean() + torch.nn.functional.cross_entropy(
        out["logits"], labels
    )
    loss.backward()
    for name, p in model.named_parameters():
        if name in names:
            assert p.grad is not None, f"no gradient reached trainable {name}"
            assert p.grad.abs().sum() > 0, f"zero gradient for trainable {name}"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    groups = {n.split(".")[0] for n in names}
    assert groups == {"prompt_generator", "pgf", "seg_head"}


# --------------------------------------------------------------------------- paper sizes


def test_paper_size_parameter_counts() -> None:
    cr_only = count_parameters(TDPCR(**paper_sizes()["tdpcr"]))
    full = count_parameters(TDPCR(**{**paper_sizes()["tdpcr"], "num_classes": 7}))
    dsen2cr = count_parameters(DSen2CR(**paper_sizes()["dsen2cr"]))
    assert abs(cr_only / 5.92e6 - 1) < 0.05, cr_only
    assert abs(full / 5.95e6 - 1) < 0.05, full
    assert abs(dsen2cr / 18.95e6 - 1) < 0.005, dsen2cr
    # Exact values, so that an accidental architecture change shows up here.
    assert (cr_only, full, dsen2cr) == (5_746_005, 5_780_828, 18_947_341)


def test_dsen2cr_paper_macs() -> None:
    """1241.2 G MACs at 256 x 256. Counted at 64 x 64 and scaled by 16: every layer is a
    stride-1 'same' conv, so fvcore's count (output pixels x kernel MACs) is exactly
    proportional to the pixel count, and the test stays fast."""
    model = DSen2CR(**paper_sizes()["dsen2cr"])
    _, macs = count_params_macs(model, _inputs(1, 64, 64))
    assert abs(macs * 16 / 1241.2e9 - 1) < 0.005, macs * 16


# --------------------------------------------------------------------------- SegFormer


@pytest.mark.parametrize("channels", [13, 2])
def test_segformer_offline_full_resolution(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = create_model(
        "segformer",
        in_channels=channels,
        num_classes=7,
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16,
    )
    x = torch.rand(2, channels, 64, 96)
    logits = model(x)["logits"]
    assert logits.shape == (2, 7, 64, 96)
    logits.mean().backward()


def test_segformer_default_is_b0_sized() -> None:
    from tdpcr.models.segformer import SegFormer

    n = count_parameters(SegFormer(in_channels=13, num_classes=7))
    assert abs(n / 3.73e6 - 1) < 0.02, n


# --------------------------------------------------------------------------- registry


def test_create_model_and_list_models() -> None:
    assert list_models() == ["dsen2cr", "emrdm", "segformer", "tdpcr"]
    model = create_model("tdpcr", **TINY, num_classes=4)
    assert isinstance(model, TDPCR) and model.num_classes == 4
    assert isinstance(create_model("dsen2cr", features=8, num_blocks=1), DSen2CR)


def test_create_model_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'unet'.*dsen2cr, emrdm, segformer, tdpcr"):
        create_model("unet")


def test_create_model_bad_kwarg_names_model() -> None:
    with pytest.raises(TypeError, match="dsen2cr"):
        create_model("dsen2cr", widht=3)


def test_models_package_imports_no_io_or_cli() -> None:
    code = (
        "import sys, tdpcr.models, tdpcr.models.segformer\n"
        "bad = [m for m in sys.modules if m == 'mlflow' or m.startswith(('mlflow.', "
        "'tdpcr.cli', 'tdpcr.data', 'rasterio', 'snakemake'))]\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert res.stdout.strip() == ""
