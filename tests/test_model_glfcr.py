"""Tests of the GLF-CR baseline (tdpcr.models.glfcr): shapes, size against the paper,
identity at initialisation, training, the per-pixel filter and the shifted windows."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from tdpcr.models.glfcr import (
    GLFCR,
    CrossModalWindowAttention,
    kernel_filter2d,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from tdpcr.models.registry import create_model, parameter_count

#: The CPU default size: same module types as the paper's, fewer and narrower blocks.
SMALL: dict = {
    "features": 16,
    "num_blocks": 2,
    "num_layers": 2,
    "growth": 12,
    "num_heads": 2,
    "upsample_features": 16,
}


def _inputs(b: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 13, h, w, generator=g), torch.rand(b, 2, h, w, generator=g)


def _small(**kwargs: object) -> GLFCR:
    torch.manual_seed(0)
    model = create_model("glfcr", **{**SMALL, **kwargs})
    assert isinstance(model, GLFCR)
    return model


def _randomise_tail(model: GLFCR) -> None:
    """The tail starts at zero (identity); give it weights so outputs depend on the input."""
    torch.nn.init.normal_(model.tail.weight, std=0.1)


# --------------------------------------------------------------------------- shapes and size


@pytest.mark.parametrize(("h", "w"), [(64, 64), (32, 32), (16, 48)])
def test_output_shape(h: int, w: int) -> None:
    model = _small().eval()
    with torch.no_grad():
        out = model(*_inputs(2, h, w))
    assert list(out) == ["image"]
    assert out["image"].shape == (2, 13, h, w)


def test_size_not_multiple_of_two_windows_refused() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        _small()(*_inputs(1, 40, 32))


def test_bf16_autocast_forward() -> None:
    """The trainer and predictor run CUDA models under bf16 autocast; same ops on CPU."""
    model = _small().eval()
    _randomise_tail(model)
    optical, sar = _inputs(1, 32, 32)
    with torch.no_grad():
        reference = model(optical, sar)["image"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(optical, sar)["image"]
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() < 0.05


def test_paper_size_parameter_count() -> None:
    n = parameter_count("glfcr", {})
    assert abs(n / 14.83e6 - 1) < 0.005, n
    assert n == 14_827_373  # exact: the upstream model's count (baselines.md)


def test_paper_size_macs() -> None:
    """249.7 G MACs at 256 x 256 with fvcore's default handles (Table I). Counted at 16 x 16
    (one window) and scaled by 256: every term is linear in the pixel count at a fixed window
    size."""
    model = GLFCR().eval()
    with torch.no_grad(), warnings.catch_warnings():
        # fvcore's import and torch.jit.trace warn about TorchScript's deprecation.
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, _inputs(1, 16, 16))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analysis.total() * 256
        unsupported = set(analysis.unsupported_ops())
    assert abs(macs / 249.7e9 - 1) < 0.001, macs
    # Nothing with a contraction escapes the count (elementwise ops only).
    assert not unsupported & {"aten::bmm", "aten::mm", "aten::einsum", "aten::baddbmm"}


# --------------------------------------------------------------------------- behaviour


def test_identity_at_initialisation() -> None:
    optical, sar = _inputs(2, 32, 32)
    for model in (_small().train(), _small().eval()):
        assert torch.equal(model(optical, sar)["image"], optical)


def test_training_step_l1() -> None:
    model = _small().train()
    # From the zero tail only the tail would get a non-zero gradient at the first step.
    _randomise_tail(model)
    optical, sar = _inputs(2, 32, 32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = F.l1_loss(model(optical, sar)["image"], torch.rand_like(optical))
    assert torch.isfinite(loss)
    loss.backward()
    optimiser.step()
    # The last fusion's SAR output feeds nothing: its gate (part of the published model and
    # of its parameter count) is frozen, so every trainable parameter gets a gradient, as
    # DistributedDataParallel requires.
    last = f"fusions.{SMALL['num_blocks'] - 1}.gate_sar"
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"{last}.weight", f"{last}.bias"}
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == frozen
    for name, p in model.named_parameters():
        if name in no_grad:
            continue
        assert torch.isfinite(p.grad).all(), name
        # The attention logit gate's gradient is tiny (about 1e-10: quadratic in the small
        # logit differences of a fresh model) but not zero, so Adam still moves it.
        assert p.grad.abs().max() > 0, f"{name} got a zero gradient"
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"


def test_mask_cached_per_size() -> None:
    model = _small().eval()
    _randomise_tail(model)
    with torch.no_grad():
        a = model(*_inputs(1, 32, 32))["image"]
        model(*_inputs(1, 64, 64))
        b = model(*_inputs(1, 32, 32))["image"]
    assert set(model._masks) == {(16, 16, "cpu"), (32, 32, "cpu")}
    assert torch.equal(a, b)


def test_logit_gate_matmul_is_the_1x1_conv() -> None:
    torch.manual_seed(0)
    attn = CrossModalWindowAttention(dim=12, window_size=4, num_heads=3)
    x = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(attn._mix_heads(x), attn.logit_gate(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- per-pixel filter


def _filter_loop(x: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    """Direct reference: every pixel, every tap, replicate padding by clamping indices."""
    b, c, h, w = x.shape
    out = torch.zeros_like(x)
    r = k // 2
    for n in range(b):
        for ch in range(c):
            for y in range(h):
                for xx in range(w):
                    acc = 0.0
                    for dy in range(k):
                        for dx in range(k):
                            sy = min(max(y + dy - r, 0), h - 1)
                            sx = min(max(xx + dx - r, 0), w - 1)
                            acc += x[n, ch, sy, sx] * kernels[n, ch * k * k + k * dy + dx, y, xx]
                    out[n, ch, y, xx] = acc
    return out


@pytest.mark.parametrize("k", [5, 3])
def test_kernel_filter2d_matches_loop(k: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    kernels = torch.randn(2, 3 * k * k, 6, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        kernel_filter2d(x, kernels, k), _filter_loop(x, kernels, k), rtol=0, atol=1e-5
    )


# --------------------------------------------------------------------------- shifted windows


@pytest.mark.parametrize(("h", "w"), [(8, 8), (16, 24), (32, 32)])
def test_window_partition_round_trip(h: int, w: int) -> None:
    x = torch.randn(2, h, w, 5)
    windows = window_partition(x, 8)
    assert windows.shape == (2 * (h // 8) * (w // 8), 64, 5)
    # The first window is the top-left 8 x 8 block, row-major.
    assert torch.equal(windows[0], x[0, :8, :8].reshape(64, 5))
    assert torch.equal(window_reverse(windows, 8, h, w), x)


def _swin_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Independent reference: Swin's region labels written with slices."""
    label = torch.zeros(1, h, w, 1)
    region = 0
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for hs in bands:
        for ws in bands:
            label[:, hs, ws, :] = region
            region += 1
    ids = window_partition(label, window).squeeze(-1)
    diff = ids[:, None, :] - ids[:, :, None]
    return diff.ne(0).float() * -100.0


@pytest.mark.parametrize(("h", "w"), [(8, 8), (16, 24), (32, 32)])
def test_shifted_window_mask(h: int, w: int) -> None:
    mask = shifted_window_mask(h, w, 8, 4)
    assert mask.shape == ((h // 8) * (w // 8), 64, 64)
    assert torch.equal(mask, _swin_mask(h, w, 8, 4))
    # Windows away from the bottom and right edges hold one region: nothing masked.
    if h > 8 and w > 8:
        assert not mask[0].any()
    assert mask[-1].any()
