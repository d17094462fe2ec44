"""PGF SAR-weight measure, its claims rows and figure; the grid (checkerboard) check and ICNR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdpcr.cli import main
from tdpcr.core.specs import PGF_GAP_MEAN, pgf_stage_key
from tdpcr.evaluation.claims import (
    CONTRADICTED,
    HOLDS,
    PGF_CLAIMS,
    PGF_MIN_EFFECT,
    claim_methods,
    evaluate_pgf_claim,
)
from tdpcr.evaluation.methods import PGF_CONTROL, PGF_METHODS, get_method
from tdpcr.evaluation.pgf import PGFMeter
from tdpcr.evaluation.protocols import score_split
from tdpcr.evaluation.spectrum import (
    GRID_PEAK_LIMIT,
    SpectrumMeter,
    grid_line_mask,
    grid_peak_ratio,
    peak_contrast,
)
from tdpcr.models.tdpcr import TDPCR

SIZE = 64


def smooth(seed: int, channels: int, batch: int = 2) -> torch.Tensor:
    """Smooth random images: 8 x 8 uniform noise upsampled bilinearly to SIZE."""
    noise = torch.rand(batch, channels, 8, 8, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def tiny_tdpcr(mode: str = "both", num_classes: int | None = None, seed: int = 0) -> TDPCR:
    torch.manual_seed(seed)
    return TDPCR(
        width=8,
        enc_blocks=(1, 1, 1, 1),
        dec_blocks=(1, 1, 1, 1),
        prompt_hidden=8,
        pgf_min_hidden=4,
        pgf_mode=mode,
        num_classes=num_classes,
    ).eval()


# --------------------------------------------------------------------------- spectrum
def test_spectrum_flags_a_checkerboard_and_passes_a_smooth_image() -> None:
    reference = smooth(0, 13)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    checker = reference + 0.05 * ((yy + xx) % 2).float()
    stripes = reference + 0.05 * ((xx // 2) % 2).float()  # 4-pixel period
    assert grid_peak_ratio(checker, reference) > GRID_PEAK_LIMIT
    assert grid_peak_ratio(stripes, reference) > GRID_PEAK_LIMIT
    assert grid_peak_ratio(smooth(1, 13), reference) < GRID_PEAK_LIMIT
    assert grid_peak_ratio(reference, reference) == pytest.approx(1.0)


def test_peak_contrast_tells_a_grid_from_broadband_error() -> None:
    """Both a checkerboard and white noise raise the grid-line ratio; only the grid is a peak."""
    texture = torch.randn(2, 13, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    reference = smooth(0, 13) + 0.01 * texture  # some fine texture, as real ground has
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    checker = reference + 0.05 * ((yy + xx) % 2).float()
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(3))
    noisy = reference + 0.05 * noise
    assert grid_peak_ratio(noisy, reference) > GRID_PEAK_LIMIT  # the ratio alone flags both
    assert peak_contrast(checker, reference) > 5
    assert 0.7 < peak_contrast(noisy, reference) < 1.4
    meter = SpectrumMeter()
    meter.update(checker, reference)
    grid = meter.compute()
    assert grid["peak_contrast"] == pytest.approx(peak_contrast(checker, reference))
    near, lines = grid_line_mask(SIZE, SIZE, neighbours=True), grid_line_mask(SIZE, SIZE)
    assert near.any() and not (near & lines).any()


def _output_grid_ratio(icnr: bool) -> float:
    model = tiny_tdpcr(seed=0)
    if not icnr:
        for up in model.ups:
            up[0].reset_parameters()  # PyTorch's default init: independent sub-pixel kernels
    # The ending conv starts at zero (the untrained model returns its input); give it random
    # weights at a trained residual's scale (a fraction of the image) so the decoder shows.
    model.ending.reset_parameters()
    with torch.no_grad():
        model.ending.weight.mul_(0.3)
        optical = smooth(0, 13)
        return grid_peak_ratio(model(optical, smooth(5, 2))["image"], optical)


def test_default_pixelshuffle_init_grids_the_output_and_icnr_does_not() -> None:
    assert _output_grid_ratio(icnr=False) > GRID_PEAK_LIMIT
    assert _output_grid_ratio(icnr=True) < GRID_PEAK_LIMIT


def test_icnr_upsampler_is_nearest_neighbour_at_init() -> None:
    up = tiny_tdpcr().ups[-1]
    x = torch.randn(1, up[0].in_channels, 4, 4)
    y = up(x)
    blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, C, 4, 4, 2, 2): each block one value
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))


# --------------------------------------------------------------------------- PGF meter
def cloud_batch() -> dict[str, torch.Tensor]:
    """Two patches: left half cloud (a shadow strip, an unknown corner), right half clear."""
    mask = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    mask[:, :, : SIZE // 2] = 1
    mask[:, :8, SIZE // 2 : SIZE // 2 + 8] = 2
    mask[:, -4:, -4:] = 255
    opacity = torch.where(mask == 1, torch.linspace(0.1, 1.0, SIZE)[None, :, None], 0.0)
    return {
        "s2_cloudy": smooth(0, 13),
        "s2_clear": smooth(1, 13),
        "s1": smooth(2, 2),
        "cloudmask": mask,
        "cloud_opacity": opacity,
        "landcover": torch.zeros(2, SIZE, SIZE, dtype=torch.int64),
        "patch_id": ["a", "b"],
        "index": torch.tensor([0, 1]),
    }


@pytest.mark.parametrize("mode", ["both", "local", "global"])
def test_pgf_meter_gives_finite_weights_in_unit_range(mode: str) -> None:
    model = tiny_tdpcr(mode)
    batch = cloud_batch()
    with torch.no_grad():
        weights = model(batch["s2_cloudy"], batch["s1"], return_weights=True)["weights"]
    meter = PGFMeter()
    meter.update(weights, batch["cloudmask"], batch["cloud_opacity"])
    values = meter.per_patch()
    assert meter.stages == 4
    for stage in range(1, 5):
        for region in ("cloudy", "clear"):
            v = np.asarray(values[pgf_stage_key(region, stage)])
            assert v.shape == (2,) and np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all()
    summary = meter.summary()
    opacity = np.asarray(summary["opacity_sar_weight"], dtype=float)
    assert opacity.shape == (4, len(summary["opacity_edges"]) - 1)
    assert np.isfinite(opacity[:, 0]).all()  # the clear pixels fall in the first bin
    if mode == "global":  # the control: constant over the patch, no cloudy - clear difference
        assert values[PGF_GAP_MEAN] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_pgf_meter_sees_a_weight_that_follows_the_mask() -> None:
    """Weights equal to the corrupted share give cloudy 1, clear 0 at every stage."""
    batch = cloud_batch()
    corrupted = ((batch["cloudmask"] == 1) | (batch["cloudmask"] == 2)).float()
    weights = []
    for stage in range(4):
        size = SIZE // 2**stage
        sar = (F.adaptive_avg_pool2d(corrupted[:, None], size) > 0.5).float()
        alpha = torch.cat([1 - sar, sar], dim=1)[:, :, None].expand(-1, -1, 3, -1, -1)
        weights.append(alpha)
    meter = PGFMeter()
    meter.update(weights, batch["cloudmask"])
    values = meter.per_patch()
    assert values[pgf_stage_key("gap", 1)] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert all(g > 0.9 for g in values[PGF_GAP_MEAN])
    # Without cloud opacity nothing is binned: NaN means, zero counts.
    assert np.asarray(meter.summary()["opacity_pixels"]).sum() == 0


def test_patch_without_cloud_has_no_difference() -> None:
    meter = PGFMeter()
    alpha = torch.full((1, 2, 3, 8, 8), 0.5)
    meter.update([alpha], torch.zeros(1, 8, 8, dtype=torch.uint8))
    values = meter.per_patch()
    assert math.isnan(values[pgf_stage_key("cloudy", 1)][0])
    assert values[pgf_stage_key("clear", 1)][0] == pytest.approx(0.5)
    assert math.isnan(values[PGF_GAP_MEAN][0])


def test_score_split_measures_pgf_only_when_asked() -> None:
    method = get_method(PGF_CONTROL)
    models = {PGF_CONTROL: tiny_tdpcr("global", num_classes=7)}
    batch = cloud_batch()
    scores = score_split(method, models, [batch], torch.device("cpu"), pgf=True)
    assert scores.pgf is not None and scores.spectrum is not None
    assert scores.pgf.per_patch()[PGF_GAP_MEAN] == pytest.approx([0.0, 0.0], abs=1e-6)
    grid = scores.spectrum.compute()
    assert grid["patches"] == 2 and math.isfinite(grid["ratio"])
    plain = score_split(method, models, [batch], torch.device("cpu"))
    assert plain.pgf is None and plain.spectrum is None


# --------------------------------------------------------------------------- claims
def fake_pgf_evaluation(name: str, gap: float, patches: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    per_patch: dict = {"patch_id": [f"p{i}" for i in range(patches)], "group": ["s0"] * patches}
    gaps = []
    for stage in range(1, 5):
        clear = rng.uniform(0.3, 0.5, patches)
        noise = 0.0 if name == PGF_CONTROL else 0.01
        cloudy = clear + gap + rng.normal(0, noise, patches)
        per_patch[pgf_stage_key("cloudy", stage)] = cloudy.tolist()
        per_patch[pgf_stage_key("clear", stage)] = clear.tolist()
        per_patch[pgf_stage_key("gap", stage)] = (cloudy - clear).tolist()
        gaps.append(cloudy - clear)
    per_patch[PGF_GAP_MEAN] = np.mean(gaps, axis=0).tolist()
    grid = {"ratio": 1.0 + gap * 10, "passed": gap * 10 <= 0.5, "patches": patches}
    return {
        "method": name,
        "metrics": {},
        "per_patch": per_patch,
        "pgf": {
            "stages": 4,
            "opacity_edges": [0.0, 0.5, 1.0],
            "opacity_sar_weight": [[0.4, 0.4 + gap]] * 4,
        },
        "grid": grid,
    }


def test_pgf_claims_verdicts() -> None:
    gaps = {"tdpcr-cr": 0.001, "tdpcr-full": 0.2, PGF_CONTROL: 0.0, "tdpcr-local-full": 0.04}
    evaluations = {m: fake_pgf_evaluation(m, gaps[m], seed=i) for i, m in enumerate(gaps)}
    rows = {c.method: evaluate_pgf_claim(c, evaluations) for c in PGF_CLAIMS}
    assert set(rows) == set(PGF_METHODS) and set(PGF_METHODS) <= set(claim_methods())
    assert rows["tdpcr-full"]["verdict"] == HOLDS
    assert rows["tdpcr-cr"]["verdict"] == CONTRADICTED  # interval well below the min effect
    assert rows["tdpcr-local-full"]["verdict"] == CONTRADICTED  # real, but below the minimum
    control = rows[PGF_CONTROL]
    assert control["verdict"] == HOLDS and control["difference"] == pytest.approx(0.0, abs=1e-6)
    assert "control" in control["note"] and str(PGF_MIN_EFFECT) in control["note"]
    for row in rows.values():
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["metric"] == PGF_GAP_MEAN and row["patches"] == 40


def test_control_that_varies_fails() -> None:
    evaluations = {PGF_CONTROL: fake_pgf_evaluation(PGF_CONTROL, 0.3)}
    claim = next(c for c in PGF_CLAIMS if c.control)
    assert evaluate_pgf_claim(claim, evaluations)["verdict"] == CONTRADICTED


def test_claims_without_pgf_values_are_refused() -> None:
    from tdpcr.core.errors import InputDataError

    evaluation = fake_pgf_evaluation("tdpcr-full", 0.1)
    del evaluation["per_patch"][PGF_GAP_MEAN]
    claim = next(c for c in PGF_CLAIMS if c.method == "tdpcr-full")
    with pytest.raises(InputDataError, match="no PGF weights"):
        evaluate_pgf_claim(claim, {"tdpcr-full": evaluation})


# --------------------------------------------------------------------------- commands
def _write(folder: Path, gaps: dict[str, float]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, gap) in enumerate(gaps.items()):
        path = folder / f"{name}.json"
        path.write_text(json.dumps(fake_pgf_evaluation(name, gap, seed=i)))
        paths.append(str(path))
    return paths


def test_grid_check_records_a_failure_and_exits_zero(tmp_path: Path) -> None:
    evals = _write(tmp_path / "eval", {"tdpcr-cr": 0.0, "tdpcr-full": 0.2})
    out = tmp_path / "grid_check.json"
    assert main(["grid-check", "--evals", *evals, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["limit"] == GRID_PEAK_LIMIT and result["passed"] is False
    assert result["methods"]["tdpcr-cr"]["passed"] is True
    assert result["methods"]["tdpcr-full"]["passed"] is False


def test_pgf_figure_is_drawn(tmp_path: Path) -> None:
    evals = _write(tmp_path / "eval", {m: 0.05 * i for i, m in enumerate(PGF_METHODS)})
    out = tmp_path / "pgf.png"
    assert main(["pgf-figure", "--evals", *evals, "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_readme_renders_a_pgf_row_as_cloudy_minus_clear() -> None:
    from tdpcr.evaluation.report import claims

    evaluations = {"tdpcr-full": fake_pgf_evaluation("tdpcr-full", 0.0012)}
    claim = next(c for c in PGF_CLAIMS if c.method == "tdpcr-full")
    row = {
        k: "" if v is None else str(v) for k, v in evaluate_pgf_claim(claim, evaluations).items()
    }
    text = claims([row])
    assert "tdpcr-full: cloudy - clear" in text and row["verdict"] in text
    assert "0.000 [" not in text  # small weight differences keep 4 digits
