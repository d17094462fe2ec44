"""EMRDM baseline: the diffusion wrapper (tdpcr.models.emrdm) and its hourglass denoiser."""

from __future__ import annotations

import pytest
import torch

from tdpcr.models.emrdm import EMRDM, macs_per_evaluation
from tdpcr.models.emrdm_denoiser import (
    global_attention_macs,
    neighbourhood_attention,
    neighbourhood_attention_macs,
    window_starts,
)
from tdpcr.models.registry import create_model, parameter_count

#: Smallest model with the published structure: two neighbourhood levels and a global
#: middle level.
TINY = {
    "widths": (16, 32, 48),
    "depths": (1, 1, 1),
    "d_ffs": (32, 64, 96),
    "kernel_sizes": (7, 7, None),
    "dropouts": (0.0, 0.0, 0.0),
    "d_head": 16,
    "mapping_width": 32,
    "mapping_d_ff": 64,
    "mapping_depth": 1,
}


def _tiny(**kwargs: object) -> EMRDM:
    torch.manual_seed(0)
    return create_model("emrdm", **TINY, **kwargs).eval()


def _inputs(height: int, width: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 13, height, width, generator=g), torch.rand(
        batch, 2, height, width, generator=g
    )


def _randomise_output_layer(model: EMRDM) -> None:
    """Give the zero-initialised last layer weights, so the network output is not zero."""
    with torch.no_grad():
        model.denoiser.patch_out.proj.weight.normal_(0, 0.1)


@pytest.mark.parametrize(("size", "patch_size"), [((64, 64), 1), ((20, 28), 1), ((24, 40), 2)])
def test_output_shape(size: tuple[int, int], patch_size: int) -> None:
    # 20 x 28 is not a multiple of 8: padded internally and cropped back; with 2 x 2 patches
    # the multiple is 16.
    optical, sar = _inputs(*size)
    with torch.inference_mode():
        out = _tiny(patch_size=patch_size)(optical, sar)
    assert list(out) == ["image"]
    assert out["image"].shape == optical.shape
    assert torch.isfinite(out["image"]).all()


def test_paper_size_parameter_count() -> None:
    n = parameter_count("emrdm", {})
    assert abs(n / 39.13e6 - 1) < 0.005, n
    assert n == 39_133_515  # the upstream model instantiated with the Sentinel config


def test_sampler_is_seeded() -> None:
    model = _tiny()
    _randomise_output_layer(model)
    optical, sar = _inputs(16, 16)
    with torch.inference_mode():
        torch.manual_seed(123)
        first = model(optical, sar)["image"]
        torch.manual_seed(456)
        torch.rand(100)
        second = model(optical, sar)["image"]
        model.seed = 1
        other = model(optical, sar)["image"]
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


def test_sampler_schedule_and_final_step() -> None:
    model = _tiny()
    sigmas = model.sigmas()
    assert len(sigmas) == 6 and sigmas[-1] == 0
    assert sigmas[0] == pytest.approx(100.0) and sigmas[-2] == pytest.approx(0.001)
    assert (sigmas[:-1] > sigmas[1:]).all()
    # With a denoiser that always answers x0, the last Euler step (to sigma 0) returns x0
    # whatever the noise: the sampler's output is D of its last evaluation.
    optical, sar = _inputs(8, 8)
    clear = torch.rand_like(optical)
    model.denoise = lambda x, sigma, condition: clear * 2 - 1  # type: ignore[method-assign]
    out = model(optical, sar)["image"]
    torch.testing.assert_close(out, clear, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile", [8, 3, 2])
def test_neighbourhood_attention_matches_brute_force(tile: int) -> None:
    # Tile 8 covers the 9 x 11 map in padded tiles whose halo is the whole map; tiles 2 and 3
    # have halos smaller than the map, clamped at the borders.
    g = torch.Generator().manual_seed(0)
    height, width, kernel = 9, 11, 7
    q, k, v = (torch.randn(2, 3, height, width, 8, generator=g, dtype=torch.float64) for _ in "qkv")
    out = neighbourhood_attention(q, k, v, kernel, tile=tile)
    ref = torch.empty_like(out)
    for i in range(height):
        for j in range(width):
            # NATTEN's clamped window: centred where it fits, shifted inward at the borders.
            r0 = min(max(i - kernel // 2, 0), height - kernel)
            c0 = min(max(j - kernel // 2, 0), width - kernel)
            keys = k[:, :, r0 : r0 + kernel, c0 : c0 + kernel].flatten(2, 3)
            values = v[:, :, r0 : r0 + kernel, c0 : c0 + kernel].flatten(2, 3)
            weights = torch.einsum("bhd,bhnd->bhn", q[:, :, i, j], keys).softmax(-1)
            ref[:, :, i, j] = torch.einsum("bhn,bhnd->bhd", weights, values)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert window_starts(9, 7).tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2]


def test_neighbourhood_attention_over_whole_map_is_global() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 6, 8, generator=g, dtype=torch.float64) for _ in "qkv")
    out = neighbourhood_attention(q, k, v, 7)  # the kernel covers the whole 5 x 6 map
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3), scale=1.0
    ).unflatten(2, (5, 6))
    torch.testing.assert_close(out, ref)


def test_training_step() -> None:
    model = _tiny().train()
    optical, sar = _inputs(32, 32)
    clear = torch.rand_like(optical)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    torch.manual_seed(0)
    loss, parts = model.training_loss(optical, sar, clear)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(parts) == {"loss", "l2"} and parts["loss"] == pytest.approx(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)
    # Zero-initialised residual ends: only the output layer has a gradient at step one.
    assert model.denoiser.patch_out.proj.weight.grad.abs().sum() > 0
    optimizer.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "denoiser.patch_out.proj.weight" in changed
    # The global RNG drives the loss's noise: the same seed gives the same loss.
    fresh = _tiny().train()
    torch.manual_seed(0)
    again, _ = fresh.training_loss(optical, sar, clear)
    assert again.item() == pytest.approx(parts["loss"])


def test_preconditioning_identity_at_zero_noise() -> None:
    model = _tiny()
    _randomise_output_layer(model)
    sigma = torch.tensor([1e-8, 1e-4, 1.0, 80.0])
    c_skip, c_out, c_in, c_noise = model.preconditioning(sigma)
    assert c_skip[0] == pytest.approx(1.0, abs=1e-6) and c_out[0] == pytest.approx(0, abs=1e-6)
    assert c_in[0] == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    torch.testing.assert_close(model.loss_weight(sigma), c_out.pow(-2))
    # c_skip and c_out are the least-squares coefficients: c_skip^2 Z + c_out^2 ... the
    # variance identity c_out^2 = sigma_data^2 - (sigma_data^2 + v)^2 / Z.
    r = 3.0 * sigma
    z = sigma**2 + 1 + r**2 + 2 * 0.9 * r
    torch.testing.assert_close(c_out**2, 1 - (1 + 0.9 * r) ** 2 / z)
    # D(x; sigma -> 0) = x for any network output.
    optical, sar = _inputs(16, 16)
    x = torch.randn_like(optical)
    condition = torch.cat([sar, optical], dim=1) * 2 - 1
    with torch.no_grad():
        d = model.denoise(x, torch.full((2,), 1e-8), condition)
        d_noisy = model.denoise(x, torch.full((2,), 1.0), condition)
    torch.testing.assert_close(d, x, atol=1e-5, rtol=0)
    assert not torch.allclose(d_noisy, x, atol=1e-3)


def test_macs_per_evaluation() -> None:
    model = _tiny()
    macs = macs_per_evaluation(model, 16, 16)
    assert 0 < macs["table1"] < macs["fvcore"] < macs["full"]
    assert macs["full"] == macs["fvcore"] + macs["attention"]
    assert macs["full_per_image"] == 5 * macs["full"]
    # Attention, by hand: per level one layer down, one up (middle: one), 2 heads of 16 at
    # level 1... d_head 16 throughout, heads = width / 16.
    expected = 2 * neighbourhood_attention_macs((1, 1, 16, 16, 16), 7)  # level 0, down + up
    expected += 2 * neighbourhood_attention_macs((1, 2, 8, 8, 16), 7)  # level 1
    expected += global_attention_macs((1, 3, 4, 4, 16))  # middle
    assert macs["attention"] == expected
