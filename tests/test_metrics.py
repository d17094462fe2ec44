"""Metrics: hand-computed cases, scikit-image agreement (synthetic and real imagery).

Tolerances: our PSNR / SSIM are computed in float64. Against scikit-image fed float64 inputs
(the same values) we require agreement to 1e-9 (measured: <= 4e-15 on the real SEN12MS-CR
pairs). scikit-image fed float32 arrays computes its filters in float32; against that we
require 1e-5 (measured: PSNR ~1e-8 dB, SSIM ~1.2e-7 on the same pairs).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tdpcr.core.metrics import (
    PSNR_CAP_DB,
    ReconstructionMeter,
    SegmentationMeter,
    _gaussian_filter_conv,
    _gaussian_filter_matmul,
    confusion_matrix,
    errors_per_image,
    pa_miou,
    psnr_per_image,
    ssim_map,
    ssim_per_image,
)
from tdpcr.core.specs import CR_METRICS, IGNORE_INDEX
from tdpcr.data.normalize import normalise_s2
from tests.conftest import REALDATA

TOL_F64 = 1e-9
TOL_F32 = 1e-5
SK_SSIM = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1,
    "channel_axis": 0,
}
needs_realdata = pytest.mark.skipif(not REALDATA.exists(), reason="../shared/realdata absent")


def sk_ssim(target: np.ndarray, pred: np.ndarray) -> float:
    return float(structural_similarity(target, pred, **SK_SSIM))


def sk_ssim_mean_map(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """skimage's full SSIM map (C, H, W), averaged over bands -> (H, W)."""
    kw = {k: v for k, v in SK_SSIM.items() if k != "channel_axis"}
    maps = [
        structural_similarity(t, p, full=True, **kw)[1] for t, p in zip(target, pred, strict=True)
    ]
    return np.mean(maps, axis=0)


def smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 4.0) -> np.ndarray:
    """Spatially smooth noise rescaled to [0, 1] per band."""
    x = gaussian_filter(rng.standard_normal(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    lo = x.min(axis=(-2, -1), keepdims=True)
    hi = x.max(axis=(-2, -1), keepdims=True)
    return (x - lo) / (hi - lo)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# --------------------------------------------------------------------------- hand cases
def test_identical_images_psnr_inf_ssim_one_and_meter_caps():
    rng = np.random.default_rng(0)
    x = t(rng.random((2, 13, 32, 32)))
    assert torch.isinf(psnr_per_image(x, x)).all()
    assert torch.allclose(ssim_per_image(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    meter = ReconstructionMeter()
    meter.update(x, x)
    out = meter.compute()
    assert out["psnr"] == PSNR_CAP_DB == 100.0
    assert out["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert meter.num_capped == 2 and out["images"] == 2
    uncapped = ReconstructionMeter(psnr_cap=None)
    uncapped.update(x, x)
    assert math.isinf(uncapped.compute()["psnr"])


@pytest.mark.parametrize(("c", "expected"), [(0.1, 20.0), (0.01, 40.0), (0.05, 26.020599913)])
def test_constant_offset_psnr(c: float, expected: float):
    rng = np.random.default_rng(1)
    target = rng.uniform(0.0, 0.8, (3, 13, 20, 24))
    for sign in (1.0, -1.0):
        pred = target + c if sign > 0 else target
        ref = target if sign > 0 else target + c
        psnr = psnr_per_image(t(pred), t(ref))
        assert psnr.dtype == torch.float64 and psnr.shape == (3,)
        assert torch.allclose(psnr, torch.full((3,), -20 * math.log10(c), dtype=torch.float64))
        assert psnr[0].item() == pytest.approx(expected, abs=1e-8)


def test_float32_inputs_give_float64_results():
    target = torch.full((1, 13, 16, 16), 0.5, dtype=torch.float32)
    pred = target + 0.1
    psnr = psnr_per_image(pred, target)
    assert psnr.dtype == torch.float64
    assert psnr.item() == pytest.approx(20.0, abs=1e-5)  # 0.6f - 0.5f is not exactly 0.1


def test_clamping():
    target = torch.full((1, 13, 16, 16), 0.9, dtype=torch.float64)
    # 1.9 is clamped to 1.0: an offset of 0.1 -> 20 dB.
    assert psnr_per_image(target + 1.0, target).item() == pytest.approx(20.0, abs=1e-9)
    # Both out of range on the same side: identical after clamping.
    assert torch.isinf(psnr_per_image(target * 0 + 1.7, target * 0 + 1.2)).all()
    assert torch.isinf(psnr_per_image(target * 0 - 0.3, target * 0)).all()
    rng = np.random.default_rng(2)
    a = t(rng.uniform(-0.5, 1.5, (2, 13, 24, 24)))
    b = t(rng.uniform(-0.5, 1.5, (2, 13, 24, 24)))
    assert torch.equal(ssim_per_image(a, b), ssim_per_image(a.clamp(0, 1), b.clamp(0, 1)))
    assert torch.equal(psnr_per_image(a, b), psnr_per_image(a.clamp(0, 1), b.clamp(0, 1)))


def test_mask_restricts_psnr():
    rng = np.random.default_rng(3)
    target = t(rng.uniform(0.0, 0.6, (2, 13, 16, 20)))
    mask = torch.zeros(2, 16, 20, dtype=torch.bool)
    mask[:, :, :8] = True
    mask[1] = False  # image 1: nothing selected -> NaN
    offset = torch.where(
        mask[:, None],
        torch.tensor(0.1, dtype=torch.float64),
        torch.tensor(0.3, dtype=torch.float64),
    )
    pred = target + offset
    psnr = psnr_per_image(pred, target, mask)
    assert psnr[0].item() == pytest.approx(20.0, abs=1e-9)
    assert math.isnan(psnr[1].item())
    # Inverse mask of image 0: offset 0.3; (B, 1, H, W) masks are accepted too.
    inv = psnr_per_image(pred, target, (~mask)[:, None])
    assert inv[0].item() == pytest.approx(-20 * math.log10(0.3), abs=1e-9)
    full = torch.ones(2, 16, 20, dtype=torch.bool)
    assert torch.equal(psnr_per_image(pred, target, full), psnr_per_image(pred, target))


def test_mask_restricts_ssim():
    rng = np.random.default_rng(4)
    target = t(smooth(rng, (1, 13, 40, 48)))
    pred = target.clone()
    pred[..., 24:] = t(rng.random((1, 13, 40, 24)))  # right half replaced by noise
    mask = torch.zeros(1, 40, 48, dtype=torch.bool)
    # 6 px away from the change: the 11x11 window (radius 5) never sees it -> SSIM exactly 1.
    mask[:, :, : 24 - 6] = True
    assert ssim_per_image(pred, target, mask).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim_per_image(pred, target).item() < 0.8
    # An all-true mask gives the unmasked (skimage, border-cropped) value exactly.
    full = torch.ones(1, 40, 48, dtype=torch.bool)
    assert torch.equal(ssim_per_image(pred, target, full), ssim_per_image(pred, target))
    # A mask entirely in the 5-px border selects nothing unless crop_border=False.
    border = torch.zeros(1, 40, 48, dtype=torch.bool)
    border[:, :3, :] = True
    assert math.isnan(ssim_per_image(pred, target, border).item())
    assert not math.isnan(ssim_per_image(pred, target, border, crop_border=False).item())


def test_known_confusion_matrix_pa_miou():
    # K = 4; class 3 never occurs (excluded from mIoU); 255 and 9 are ignored targets.
    target = torch.tensor([[0, 0, 1, 1, 2, 255, 9]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2, 2]])
    cm = confusion_matrix(pred, target, num_classes=4)
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    pa, miou, per_class = pa_miou(cm)
    assert pa == pytest.approx(3 / 5)
    assert per_class[:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(per_class[3])
    assert miou == pytest.approx((1 / 3 + 2 / 3 + 0.0) / 3)
    # Scores (B, K, H, W) are arg-maxed.
    logits = torch.nn.functional.one_hot(pred, 4).permute(0, 2, 1).float()
    assert torch.equal(confusion_matrix(logits, target, 4), cm)
    # A prediction outside [0, K) at a labelled pixel is an error; at an ignored one it is not.
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([[7, 0]]), torch.tensor([[0, 0]]), 4)
    assert confusion_matrix(torch.tensor([[7, 0]]), torch.tensor([[255, 0]]), 4).sum() == 1
    pa, miou, per_class = pa_miou(torch.zeros(4, 4, dtype=torch.int64))
    assert math.isnan(pa) and math.isnan(miou) and all(math.isnan(v) for v in per_class)


def test_segmentation_meter_cloudy_clear_split():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 0]]])
    cloud = torch.tensor([[[1, 1, 1, 0], [0, 0, 1, 255]]], dtype=torch.uint8)
    meter = SegmentationMeter(num_classes=3)
    meter.update(pred, target, cloud)
    out = meter.compute()
    # All labelled pixels: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,0) -> 4 of 7 right.
    assert out["pa"] == pytest.approx(4 / 7)
    # Cloudy: (0,0) (0,1) (1,1); pixel 255-target ignored -> 2 of 3.
    assert out["pa_cloudy"] == pytest.approx(2 / 3)
    assert out["per_class_iou_cloudy"][:2] == pytest.approx([1 / 2, 1 / 2])
    assert math.isnan(out["per_class_iou_cloudy"][2])  # class 2 absent from cloudy pixels
    assert out["miou_cloudy"] == pytest.approx(1 / 2)
    # Clear: (1,1) (2,2) (2,0) -> 2 of 3; IoU0 = 0/1, IoU1 = 1/1, IoU2 = 1/2.
    assert out["pa_clear"] == pytest.approx(2 / 3)
    assert out["per_class_iou_clear"] == pytest.approx([0.0, 1.0, 0.5])
    assert out["miou_clear"] == pytest.approx(0.5)
    # Unknown cloud (255) pixel only in the overall matrix.
    assert int(meter.cm.sum()) == 7 == int(meter.cm_cloudy.sum() + meter.cm_clear.sum()) + 1
    # Updates accumulate; reset clears.
    meter.update(pred, target, cloud)
    assert int(meter.cm.sum()) == 14 and meter.compute()["pa"] == pytest.approx(4 / 7)
    meter.reset()
    assert math.isnan(meter.compute()["pa"])


def test_segmentation_meter_matches_torchmetrics():
    from torchmetrics.classification import MulticlassConfusionMatrix

    gen = torch.Generator().manual_seed(5)
    tm = MulticlassConfusionMatrix(num_classes=7, ignore_index=255)
    meter = SegmentationMeter()
    for _ in range(3):
        target = torch.randint(0, 7, (2, 16, 16), generator=gen)
        target[torch.rand(2, 16, 16, generator=gen) < 0.1] = 255
        pred = torch.randint(0, 7, (2, 16, 16), generator=gen)
        tm.update(pred, target)
        meter.update(pred, target)
    assert torch.equal(meter.cm, tm.compute())


def test_reconstruction_meter_splits_and_nan():
    rng = np.random.default_rng(6)
    target = t(smooth(rng, (2, 13, 32, 32))).clamp(0, 0.7)  # pred stays <= 1: no clamping
    cloud = torch.zeros(2, 32, 32, dtype=torch.uint8)
    cloud[0, :, :16] = 1
    cloud[0, :4] = 255
    # Offset 0.2 on cloudy pixels, 0.1 elsewhere (clear and unknown).
    pred = torch.where(cloud[:, None] == 1, target + 0.2, target + 0.1)
    meter = ReconstructionMeter()
    meter.update(pred[:1], target[:1], cloud[:1])
    meter.update(pred[1:], target[1:], cloud[1:])  # image 1: no cloudy pixel
    out = meter.compute()
    assert set(out) == set(CR_METRICS) | {"images"}
    assert out["images"] == 2
    assert out["psnr_cloudy"] == pytest.approx(-20 * math.log10(0.2), abs=1e-9)  # image 0 only
    assert out["psnr_clear"] == pytest.approx(20.0, abs=1e-9)
    per = meter.per_image()
    assert math.isnan(per["psnr_cloudy"][1].item()) and math.isnan(per["ssim_cloudy"][1].item())
    assert torch.equal(per["psnr"], psnr_per_image(pred, target))
    assert torch.equal(per["ssim"], ssim_per_image(pred, target))
    assert torch.equal(per["ssim_clear"], ssim_per_image(pred, target, cloud == 0))
    # No cloud mask at all: cloudy / clear scores are NaN.
    bare = ReconstructionMeter()
    bare.update(pred, target)
    assert math.isnan(bare.compute()["psnr_cloudy"]) and math.isnan(bare.compute()["ssim_clear"])
    with pytest.raises(ValueError, match="NaN"):
        bare.update(torch.full_like(pred, math.nan), target)


# --------------------------------------------------------------------------- vs skimage
@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("shape", [(13, 64, 64), (13, 37, 50), (2, 11, 11)])
def test_against_skimage_synthetic(kind: str, shape: tuple[int, int, int]):
    rng = np.random.default_rng(7)
    if kind == "random":
        target = rng.random(shape)
        pred = np.clip(target + rng.normal(0, 0.1, shape), 0, 1)
    else:
        target = smooth(rng, shape)
        pred = np.clip(0.8 * target + 0.1 * smooth(rng, shape, 2.0), 0, 1)
    ours_psnr = psnr_per_image(t(pred[None]), t(target[None])).item()
    ours_ssim = ssim_per_image(t(pred[None]), t(target[None])).item()
    assert abs(ours_psnr - peak_signal_noise_ratio(target, pred, data_range=1)) < TOL_F64
    assert abs(ours_ssim - sk_ssim(target, pred)) < TOL_F64
    # The full map, 5-px border included (scipy 'reflect' boundary).
    ref_map = np.stack(
        [
            structural_similarity(a, b, full=True, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1)[1]
            for a, b in zip(target, pred, strict=True)
        ]
    )  # fmt: skip
    assert np.abs(ssim_map(t(pred[None]), t(target[None]))[0].numpy() - ref_map).max() < TOL_F64


def test_masked_ssim_against_skimage_map():
    rng = np.random.default_rng(8)
    target = smooth(rng, (13, 48, 40))
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    mask = gaussian_filter(rng.standard_normal((48, 40)), 3) > 0
    s = sk_ssim_mean_map(target, pred)
    interior = np.zeros_like(mask)
    interior[5:-5, 5:-5] = True
    ours = ssim_per_image(t(pred[None]), t(target[None]), t(mask[None]))
    assert abs(ours.item() - s[mask & interior].mean()) < TOL_F64
    ours_full = ssim_per_image(t(pred[None]), t(target[None]), t(mask[None]), crop_border=False)
    assert abs(ours_full.item() - s[mask].mean()) < TOL_F64


def test_filter_paths_agree_and_are_deterministic():
    rng = np.random.default_rng(9)
    x = t(rng.random((3, 23, 31)))
    ref = gaussian_filter(x.numpy(), sigma=(0, 1.5, 1.5), truncate=3.5, mode="reflect")
    assert np.abs(_gaussian_filter_matmul(x).numpy() - ref).max() < 1e-13
    assert np.abs(_gaussian_filter_conv(x).numpy() - ref).max() < 1e-13
    a, b = t(rng.random((2, 13, 40, 40))), t(rng.random((2, 13, 40, 40)))
    assert torch.equal(ssim_per_image(a, b), ssim_per_image(a, b))


def test_too_small_for_ssim():
    x = torch.zeros(1, 13, 10, 32)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(x, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(10)
    target = t(smooth(rng, (2, 13, 64, 64)))
    pred = (target + t(rng.normal(0, 0.05, target.shape))).float()
    cloud = (torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).to(
        torch.uint8
    )
    cpu, gpu = ReconstructionMeter(), ReconstructionMeter()
    cpu.update(pred, target, cloud)
    gpu.update(pred.cuda(), target.cuda(), cloud.cuda())
    for k, v in cpu.compute().items():
        assert gpu.compute()[k] == pytest.approx(v, abs=1e-12, nan_ok=True)
    labels = torch.randint(0, 7, (2, 64, 64))
    seg_cpu, seg_gpu = SegmentationMeter(), SegmentationMeter()
    seg_cpu.update(labels.roll(1, -1), labels, cloud)
    seg_gpu.update(labels.roll(1, -1).cuda(), labels.cuda(), cloud.cuda())
    assert torch.equal(seg_cpu.cm_cloudy, seg_gpu.cm_cloudy)
    assert seg_cpu.compute() == seg_gpu.compute()


# --------------------------------------------------------------------------- real imagery
def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


def _real_s2_pairs() -> list[tuple[Path, Path]]:
    """(cloudy, cloud-free) S2 files of sen12ms-cr-flat and sen12ms-cr-pairs."""
    pairs = []
    flat = REALDATA / "sen12ms-cr-flat"
    for cloudy in sorted((flat / "s2_cloudy").glob("*.tif")):
        pairs.append((cloudy, flat / "s2_cloudfree" / cloudy.name))
    for cloudy in sorted((REALDATA / "sen12ms-cr-pairs").rglob("*_s2_cloudy_*.tif")):
        folder = cloudy.parent.parent / "s2" if cloudy.parent.name == "s2_cloudy" else cloudy.parent
        pairs.append((cloudy, folder / cloudy.name.replace("_s2_cloudy_", "_s2_")))
    return pairs


@pytest.mark.realdata
@needs_realdata
def test_against_skimage_real_sen12mscr():
    pairs = _real_s2_pairs()
    assert len(pairs) >= 14 and all(clear.exists() for _, clear in pairs)
    # The 2 flat triplets and every other pair (8 images, cloud cover low to high), for speed;
    # all 14 agree as well (max |diff| 4e-15 for PSNR, 2e-15 for SSIM when measured).
    pairs = pairs[:2] + pairs[2::2]
    preds = np.stack([normalise_s2(_read(c)) for c, _ in pairs])  # float32 (N, 13, 256, 256)
    targets = np.stack([normalise_s2(_read(f)) for _, f in pairs])
    ours_psnr = psnr_per_image(t(preds), t(targets)).numpy()
    ours_ssim = ssim_per_image(t(preds), t(targets)).numpy()
    d = {"psnr64": 0.0, "ssim64": 0.0, "psnr32": 0.0, "ssim32": 0.0}
    for i, (p, g) in enumerate(zip(preds, targets, strict=True)):
        p64, g64 = p.astype(np.float64), g.astype(np.float64)
        d["psnr64"] = max(
            d["psnr64"], abs(ours_psnr[i] - peak_signal_noise_ratio(g64, p64, data_range=1))
        )
        d["ssim64"] = max(d["ssim64"], abs(ours_ssim[i] - sk_ssim(g64, p64)))
        if i < 2:  # skimage on the float32 arrays themselves (float32 filtering)
            d["psnr32"] = max(
                d["psnr32"], abs(ours_psnr[i] - peak_signal_noise_ratio(g, p, data_range=1))
            )
            d["ssim32"] = max(d["ssim32"], abs(ours_ssim[i] - sk_ssim(g, p)))
    assert d["psnr64"] < TOL_F64 and d["ssim64"] < TOL_F64, d
    assert d["psnr32"] < TOL_F32 and d["ssim32"] < TOL_F32, d
    # Sanity: real cloudy vs clear spans low to high similarity.
    assert ours_psnr.min() < 20 < 40 < ours_psnr.max()


@pytest.mark.realdata
@needs_realdata
def test_reconstruction_meter_real_cloud_split():
    """Cloud mask from the cloudy image's visible brightness; skimage maps as reference."""
    (cloudy, clear), *_ = _real_s2_pairs()
    pred = normalise_s2(_read(cloudy)).astype(np.float64)
    target = normalise_s2(_read(clear)).astype(np.float64)
    bright = pred[1:4].mean(axis=0) > 0.2  # B2, B3, B4
    cloud = bright.astype(np.uint8)
    cloud[:, 200:] = 255  # unknown: in neither split
    assert 0 < bright[:, :200].mean() < 1
    meter = ReconstructionMeter()
    meter.update(t(pred[None]), t(target[None]), t(cloud[None]))
    out = meter.compute()
    s = sk_ssim_mean_map(target, pred)
    interior = np.zeros(s.shape, dtype=bool)
    interior[5:-5, 5:-5] = True
    for split, code in (("cloudy", 1), ("clear", 0)):
        m = cloud == code
        mse = ((pred - target) ** 2)[:, m].mean()
        assert abs(out[f"psnr_{split}"] - 10 * np.log10(1 / mse)) < TOL_F64
        assert abs(out[f"ssim_{split}"] - s[m & interior].mean()) < TOL_F64
    assert abs(out["ssim"] - sk_ssim(target, pred)) < TOL_F64
    assert out["psnr_cloudy"] < out["psnr_clear"]


@pytest.mark.realdata
@needs_realdata
def test_segmentation_real_landcover():
    """LuojiaSET-OSFCR land cover as target, a shifted copy as prediction, a real cloud mask."""
    root = REALDATA / "luojiaset-osfcr-sample" / "LuojiaSET-OSFCR"
    lc_path = root / "80%-100%" / "land_cover_maps" / "ROIs_01_s2_p23.tif"
    cm_path = root / "60%-80%" / "cloud_detection_results" / "ROIs_01_s2_cloudy_p22.tif"
    if not (lc_path.exists() and cm_path.exists()):
        pytest.skip("LuojiaSET sample files absent")
    target = _read(lc_path)[0].astype(np.int64)
    target[:8] = 255
    pred = np.roll(target, (3, -4), axis=(0, 1))
    pred[pred == 255] = 0
    cloud = _read(cm_path)[0].astype(np.uint8)
    meter = SegmentationMeter(num_classes=7)
    meter.update(t(pred[None]), t(target[None]), t(cloud[None]))
    out = meter.compute()
    for suffix, sel in (
        ("", np.ones_like(cloud, bool)),
        ("_cloudy", cloud == 1),
        ("_clear", cloud == 0),
    ):
        keep = sel & (target != 255)
        ref = np.zeros((7, 7), np.int64)
        np.add.at(ref, (target[keep], pred[keep]), 1)
        cm = {"": meter.cm, "_cloudy": meter.cm_cloudy, "_clear": meter.cm_clear}[suffix]
        assert np.array_equal(cm.numpy(), ref)
        assert out[f"pa{suffix}"] == pytest.approx((pred[keep] == target[keep]).mean())
        ious = []
        for c in range(7):
            union = ((pred[keep] == c) | (target[keep] == c)).sum()
            if union:
                ious.append(((pred[keep] == c) & (target[keep] == c)).sum() / union)
        assert out[f"miou{suffix}"] == pytest.approx(np.mean(ious))
    assert not math.isnan(out["per_class_iou"][0])  # shifted 255 rows became class 0
    assert math.isnan(out["per_class_iou"][1])  # class 1 absent from this map


# --------------------------------------------------------------------------- RMSE, MAE, SAM
def test_errors_and_sam_match_an_independent_numpy_computation() -> None:
    g = torch.Generator().manual_seed(5)
    target = torch.rand(3, 13, 24, 20, generator=g)
    pred = (target + 0.2 * torch.randn(3, 13, 24, 20, generator=g)).clamp(-0.1, 1.2)
    mask = torch.rand(3, 24, 20, generator=g) > 0.4
    rmse, mae = errors_per_image(pred, target, mask)
    sam = _masked_sam(pred, target, mask)
    p = pred.clamp(0, 1).double().numpy()
    t = target.clamp(0, 1).double().numpy()
    m = mask.numpy()
    for i in range(3):
        diff = (p[i] - t[i])[:, m[i]]  # (13, selected pixels)
        assert rmse[i].item() == pytest.approx(np.sqrt(np.mean(diff**2)), rel=1e-12)
        assert mae[i].item() == pytest.approx(np.mean(np.abs(diff)), rel=1e-12)
        pv, tv = p[i][:, m[i]], t[i][:, m[i]]
        cos = (pv * tv).sum(0) / (np.linalg.norm(pv, axis=0) * np.linalg.norm(tv, axis=0))
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert sam[i].item() == pytest.approx(angle.mean(), rel=1e-9)


def _masked_sam(pred, target, mask):
    from tdpcr.core.metrics import _masked_nanmean, sam_map

    return _masked_nanmean(sam_map(pred, target), mask)


def test_identical_images_have_zero_error_and_angle() -> None:
    image = torch.rand(2, 13, 16, 16)
    meter = ReconstructionMeter()
    meter.update(image, image)
    out = meter.compute()
    assert out["rmse"] == out["mae"] == 0.0
    assert out["sam"] == pytest.approx(0.0, abs=1e-3)  # acos(1 - eps) in float64


def test_shadow_pixels_count_as_cloudy() -> None:
    target = torch.full((1, 13, 16, 16), 0.3)
    pred = target.clone()
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, :4] = 1  # cloud
    mask[0, 4:8] = 2  # shadow
    pred[:, :, :8] += 0.1  # both corrupted regions reconstructed 0.1 too bright
    meter = ReconstructionMeter()
    meter.update(pred, target, mask)
    out = meter.compute()
    assert out["mae_cloudy"] == pytest.approx(0.1, abs=1e-6)  # float32 input
    assert out["mae_clear"] == pytest.approx(0.0, abs=1e-12)


def test_per_image_confusion_matrices_sum_to_the_split_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 7, (5, 12, 12), generator=g)
    target[0, :3] = IGNORE_INDEX
    pred = torch.randint(0, 7, (5, 12, 12), generator=g)
    mask = torch.randint(0, 3, (5, 12, 12), generator=g)
    meter = SegmentationMeter(num_classes=7)
    meter.update(pred[:2], target[:2], mask[:2])
    meter.update(pred[2:], target[2:], mask[2:])
    per = meter.per_image()
    assert per[""].shape == (5, 7, 7)
    assert torch.equal(per[""].sum(0), confusion_matrix(pred, target, 7))
    cloudy = (mask == 1) | (mask == 2)
    assert torch.equal(per["_cloudy"].sum(0), confusion_matrix(pred, target, 7, mask=cloudy))
    assert torch.equal(meter.cm_clear, confusion_matrix(pred, target, 7, mask=mask == 0))


def test_sam_map_equals_torchmetrics_spectral_angle_mapper() -> None:
    from torchmetrics.functional.image import spectral_angle_mapper

    from tdpcr.core.metrics import sam_map

    torch.manual_seed(0)
    pred, target = torch.rand(2, 13, 16, 16), torch.rand(2, 13, 16, 16)
    pred[0, :, 0, 0] = 0  # no direction: NaN in both
    ours = sam_map(pred, target)
    reference = torch.rad2deg(
        spectral_angle_mapper(pred.double(), target.double(), reduction="none")
    )
    assert torch.isnan(ours[0, 0, 0]) and torch.isnan(reference[0, 0, 0])
    torch.testing.assert_close(ours, reference, equal_nan=True, rtol=0, atol=1e-9)


def test_a_meter_asked_for_some_scores_computes_those_exactly() -> None:
    from tdpcr.core.metrics import ReconstructionMeter

    torch.manual_seed(1)
    pred, target = torch.rand(2, 13, 32, 32), torch.rand(2, 13, 32, 32)
    full, light = ReconstructionMeter(), ReconstructionMeter(scores=("psnr", "ssim"))
    full.update(pred, target)
    light.update(pred, target)
    every, some = full.compute(), light.compute()
    assert some["psnr"] == every["psnr"] and some["ssim"] == every["ssim"]
    assert all(math.isnan(some[k]) for k in ("sam", "rmse", "mae", "psnr_cloudy"))
    with pytest.raises(ValueError, match="unknown reconstruction scores"):
        ReconstructionMeter(scores=("psnr", "lpips"))
