"""Tests of the HPN-CR baseline (tdpcr.models.hpncr) and its published loss (hpncr_loss)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_ms_ssim

from tdpcr.models.hpncr import HPNCR, reflect_pad
from tdpcr.models.registry import create_model, parameter_count
from tdpcr.training.losses import band_sam_degrees, hpncr_loss, ms_ssim

#: The CPU default size (the architecture at about 1/8 of the published parameters); its
#: training step at batch 8, 64 x 64 costs about the TDP-CR default's.
SMALL: dict = {
    "embed_dims": [16, 32, 64, 32, 16],
    "depths": [2, 2, 3, 1, 1],
    "num_heads": [1, 2, 2, 1, 1],
    "attn_blocks": [1, 1, 2, 0, 0],
    "sar_dims": [16, 32, 64],
    "fusion_se_hidden": 4,
    "head_channels": 16,
    "head_se_hidden": 2,
}


def _inputs(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 13, h, w, generator=g), torch.rand(b, 2, h, w, generator=g)


@functools.cache
def _built() -> HPNCR:
    torch.manual_seed(0)
    model = create_model("hpncr", **SMALL)
    assert isinstance(model, HPNCR)
    return model


def _small() -> HPNCR:
    """A fresh copy of one seeded CPU-default model (built once: building costs seconds)."""
    return copy.deepcopy(_built())


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize(("h", "w"), [(64, 64), (24, 40)])
def test_output_shape_and_range(h: int, w: int) -> None:
    optical, sar = _inputs(h=h, w=w)
    with torch.no_grad():
        out = _small().eval()(optical, sar)
    assert list(out) == ["image"]
    image = out["image"]
    assert image.shape == optical.shape
    assert torch.isfinite(image).all()
    assert (image > 0).all() and (image < 1).all()  # a sigmoid's range


def test_sizes_are_multiples_of_eight_from_24() -> None:
    model = _small().eval()
    with torch.no_grad():
        # Level 3 at 3 x 3 against 16 x 16 windows: padded by reflection in steps.
        assert model(*_inputs(b=1, h=24, w=24))["image"].shape == (1, 13, 24, 24)
        for h, w in [(16, 16), (60, 64)]:
            with pytest.raises(ValueError, match="multiples of 8, at least 24"):
                model(*_inputs(b=1, h=h, w=w))


@pytest.mark.parametrize(
    ("pads", "size"), [((1, 2, 0, 3), 5), ((8, 0, 8, 0), 8), ((0, 13, 4, 9), 3)]
)
def test_reflect_pad_of_any_width(pads: tuple[int, int, int, int], size: int) -> None:
    x = torch.arange(2 * size * size, dtype=torch.float32).view(1, 2, size, size)
    left, right, top, bottom = pads
    # numpy's reflect mode reflects repeatedly when a pad exceeds the array.
    expected = np.pad(x.numpy(), [(0, 0), (0, 0), (top, bottom), (left, right)], mode="reflect")
    np.testing.assert_array_equal(reflect_pad(x, *pads).numpy(), expected)
    if max(pads) < size:
        torch.testing.assert_close(reflect_pad(x, *pads), F.pad(x, pads, mode="reflect"))


def test_paper_size_parameter_count() -> None:
    # Counted on the meta device: nothing allocated. The published count is 3,685,931.
    count = parameter_count("hpncr", {})
    assert count == 3_685_931
    assert abs(count / 3.69e6 - 1) < 0.005


def test_published_initialisation() -> None:
    """Published init, not the identity: the residual sits inside the sigmoid."""
    model = _small().eval()
    optical, sar = _inputs()
    # Published std 0.2 for the final conv and the two skip convs.
    for conv in (model.final, model.skip1, model.skip2):
        assert abs(float(conv.weight.detach().std()) / 0.2 - 1) < 0.1
    # Transformer MLP convs: truncated normal with DehazeFormer's depth gain.
    gain = (8 * sum(SMALL["depths"])) ** -0.25
    for level in (model.level1, model.level3):  # MLP ratios 2 and 4
        first = level[0].mlp.body[0]
        std = gain * (2 / (first.in_channels + first.out_channels)) ** 0.5
        assert abs(float(first.weight.detach().std()) / std - 1) < 0.15
    with torch.no_grad():
        image = model(optical, sar)["image"]
        assert not torch.allclose(image, optical, atol=0.05)  # not the identity...
        torch.nn.init.zeros_(model.final.weight)
        torch.nn.init.zeros_(model.final.bias)
        zeroed = model(optical, sar)["image"]
    # ...and the project's zero-last-conv rule would give sigmoid(input), not the input.
    torch.testing.assert_close(zeroed, torch.sigmoid(optical))


def test_training_step_with_published_loss() -> None:
    model = _small().train()
    optical, sar = _inputs()
    target = (optical + 0.1).clamp(0, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss, parts = hpncr_loss(model(optical, sar)["image"], target)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert set(parts) == {"smooth_l1", "ms_ssim", "sam_deg"}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    # Only the published-but-unused convs are frozen, and they are never used.
    assert frozen and all(n.split(".")[-2] in ("gate_2", "gate_4", "unused_v") for n in frozen)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    optimiser.step()
    changed = [not torch.equal(p, before[n]) for n, p in model.named_parameters()]
    assert sum(changed) == sum(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- loss


def test_loss_zero_for_a_perfect_prediction() -> None:
    target = torch.rand(2, 13, 64, 64, generator=torch.Generator().manual_seed(1))
    pred = target.clone().requires_grad_()
    loss, parts = hpncr_loss(pred, target)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert parts["sam_deg"] == 0.0
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_loss_positive_and_finite_at_training_crops() -> None:
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 13, 64, 64, generator=g)
    pred = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    pred.requires_grad_()
    loss, parts = hpncr_loss(pred, target)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert 0 < parts["ms_ssim"] < 1 and parts["smooth_l1"] > 0 and parts["sam_deg"] > 0
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    # The weights: 0.2 SmoothL1 + 0.8 (1 - MS-SSIM) + 0.005 SAM.
    expected = 0.2 * parts["smooth_l1"] + 0.8 * (1 - parts["ms_ssim"]) + 0.005 * parts["sam_deg"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ms_ssim_is_pytorch_msssim_from_161_px() -> None:
    g = torch.Generator().manual_seed(3)
    target = torch.rand(1, 2, 168, 176, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    expected = reference_ms_ssim(pred, target, data_range=1.0)
    torch.testing.assert_close(ms_ssim(pred, target), expected)


def test_ms_ssim_uses_fewer_scales_below_161_px() -> None:
    g = torch.Generator().manual_seed(4)
    target = torch.rand(1, 1, 64, 64, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    with pytest.raises(AssertionError):  # the library refuses 64 x 64
        reference_ms_ssim(pred, target, data_range=1.0)
    three = ms_ssim(pred, target)
    weights = (0.0448, 0.2856, 0.3001)
    scaled = tuple(w * 1.0001 / sum(weights) for w in weights)  # the published weights' sum
    torch.testing.assert_close(three, ms_ssim(pred, target, weights=scaled))
    assert 0 < float(three) < 1


def test_band_sam_is_the_angle_between_band_images() -> None:
    x = torch.zeros(1, 2, 1, 2)
    x[0, 0, 0] = torch.tensor([1.0, 0.0])
    x[0, 1, 0] = torch.tensor([1.0, 1.0])
    y = torch.zeros(1, 2, 1, 2)
    y[0, 0, 0] = torch.tensor([0.0, 3.0])  # 90 degrees from band 0
    y[0, 1, 0] = torch.tensor([2.0, 2.0])  # parallel to band 1, another brightness
    assert float(band_sam_degrees(x, y)) == pytest.approx(45.0, abs=1e-4)
