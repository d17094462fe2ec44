"""The realism report: synthetic scenes inside the stated target bands; real samples readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tdpcr.core.specs import S2_BANDS
from tdpcr.data import realism
from tdpcr.data.realism import measures
from tdpcr.data.synthetic import write_synthetic_scenes
from tdpcr.data.synthetic.clouds import CLOUD_THRESHOLD
from tests.conftest import REALDATA


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 256 px scenes (one patch each), cloud cover across the five bins."""
    root = tmp_path_factory.mktemp("realism") / "synthetic"
    write_synthetic_scenes(root, n_scenes=8, size=256, seed=0)
    return root


@pytest.fixture(scope="module")
def measured(synthetic_root: Path) -> dict:
    return realism.measure_dataset(realism.scene_samples(synthetic_root))


def test_fisher_ratio_and_correlation_helpers() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 1000)
    separated = np.where(labels == 0, 0.0, 10.0) + rng.normal(0, 1, 2000)
    mixed = rng.normal(0, 1, 2000)
    assert realism.fisher_ratio(separated, labels, [0, 1]) > 20
    assert realism.fisher_ratio(mixed, labels, [0, 1]) < 0.01
    assert realism.fisher_ratio(mixed, labels, [0]) is None  # one class only
    # Pooled moments give the pooled Pearson correlation.
    a, b = rng.normal(size=500), rng.normal(size=500)
    b += a
    moments = [measures._moments(a[:200], b[:200]), measures._moments(a[200:], b[200:])]
    assert measures._pooled_corr(moments) == pytest.approx(np.corrcoef(a, b)[0, 1])
    # The boxcar works on intensity and keeps a constant field.
    flat = np.full((2, 16, 16), -12.0, dtype=np.float32)
    assert np.allclose(realism.boxcar_db(flat), -12.0, atol=1e-4)


def test_synthetic_sar_is_inside_the_target_bands(measured: dict) -> None:
    summary = measured["summary"]
    targets = realism.TARGETS
    # Vegetation classes are hard to tell apart in SAR, as in the real samples.
    assert summary["fisher_vegetation"]["median"] < targets["fisher_vegetation"]["max_median"]
    for pol in ("vv", "vh"):
        pooled = summary[f"pooled_fisher_vegetation_{pol}"]
        assert pooled < targets["fisher_vegetation"]["max_pooled"], pol
    # Water stays separable: the all-class ratio is much larger than the vegetation one.
    assert summary["pooled_fisher_all_vv"] > 5 * summary["pooled_fisher_vegetation_vv"]
    # SAR is not a copy of the optical state: VH barely follows NIR inside a class.
    bound = targets["within_class_corr_vh_b8"]["max_abs_pooled"]
    for name, cls in summary["per_class"].items():
        if cls["pooled_corr_vh_b8"] is not None:
            assert abs(cls["pooled_corr_vh_b8"]) < bound, name
    assert summary["within_class_abs_corr_vh_b8"]["median"] < bound
    # Whole-patch VH-NDVI correlation: inside the band, and not positive everywhere.
    corr = summary["corr_vh_ndvi"]
    assert (
        targets["corr_vh_ndvi"]["min"] <= corr["min"]
        and corr["max"] <= targets["corr_vh_ndvi"]["max"]
    )
    assert corr["min"] < 0.1


def test_synthetic_spectra_and_time_gap_are_inside_the_target_bands(measured: dict) -> None:
    summary = measured["summary"]
    t = realism.TARGETS
    veg = summary["vegetation_b8"]
    assert t["vegetation_b8"]["min"] <= veg["min"] and veg["max"] <= t["vegetation_b8"]["max"]
    gap = summary["time_gap_b8"]
    assert t["time_gap_b8"]["min"] <= gap["min"] and gap["max"] <= t["time_gap_b8"]["max"]
    # Red edge as in the real L1C samples: B7 ~ B8, B8A above B8, for trees.
    tree = summary["per_class"]["tree"]["spectrum_mean"]
    b7, b8, b8a = (tree[S2_BANDS.index(b)] for b in ("B7", "B8", "B8A"))
    assert abs(b7 - b8) < 0.03 and b8a > b8


def test_cloud_mask_flags_haze_and_shadows(synthetic_root: Path, measured: dict) -> None:
    patches = measured["per_patch"]
    assert all(p["mask_matches_opacity"] for p in patches)
    assert sum(p["mask_haze_fraction"] for p in patches) > 0.01  # haze < 0.1 is flagged
    assert sum(p["mask_shadow_fraction"] for p in patches) > 0.01  # shadows have value 2
    # The measured opacities span thin haze to opaque cores.
    hist = np.asarray(measured["summary"]["opacity_hist"], dtype=float)
    edges = realism.OPACITY_BINS
    assert hist[(edges[:-1] >= CLOUD_THRESHOLD) & (edges[1:] <= 0.1)].sum() > 0
    assert hist[edges[:-1] >= 0.9].sum() > 0


def test_report_json_and_figure(synthetic_root: Path, tmp_path: Path) -> None:
    evals = {}
    for key, miou in (("clear", 0.6), ("cloudy", 0.3), ("sar", 0.4)):
        path = tmp_path / f"segformer-{key}.json"
        path.write_text(json.dumps({"metrics": {"miou": miou}}))
        evals[key] = path
    evals["missing"] = tmp_path / "absent.json"
    report = realism.write_realism_report(
        synthetic_root, None, tmp_path / "r.json", tmp_path / "f.png", evals
    )
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(report["within_targets"].values()), report["within_targets"]
    diff = report["difficulty"]
    assert diff["sar_over_clear"] == pytest.approx(0.4 / 0.6, abs=1e-3)
    assert diff["cloudy_over_clear"] == pytest.approx(0.5, abs=1e-3)
    assert diff["paper_sar_over_clear"] == pytest.approx(41.0 / 72.1, abs=1e-3)
    assert diff["paper_cloudy_over_clear"] == pytest.approx(28.4 / 72.1, abs=1e-3)
    rows = realism.comparison_rows(report)
    assert rows and all("synthetic" in values for _, values in rows)


def test_command_line(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    from tdpcr.cli import main

    args = [
        "realism",
        "--synthetic",
        str(synthetic_root),
        "--realdata",
        str(tmp_path / "no-such-folder"),
        "--out",
        str(tmp_path / "out.json"),
        "--figure",
        str(tmp_path / "out.png"),
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["within_targets"]
    assert (tmp_path / "out.json").exists() and (tmp_path / "out.png").exists()


@pytest.mark.realdata
def test_report_on_the_real_samples(synthetic_root: Path, tmp_path: Path) -> None:
    if not REALDATA.is_dir():
        pytest.skip(f"{REALDATA} not found")
    roots = realism.default_real_roots(REALDATA)
    assert {kind for kind, _ in roots} >= {"luojiaset", "sen12mscr", "sen12ms-lc"}
    report = realism.write_realism_report(
        synthetic_root, roots, tmp_path / "r.json", tmp_path / "f.png"
    )
    data = report["datasets"]
    assert {"synthetic", "luojiaset", "sen12mscr", "sen12ms_lc"} <= set(data)
    lj = data["luojiaset"]["summary"]
    assert data["luojiaset"]["patches"] >= 3  # p4, p22, p23; defective upstream files skipped
    assert np.isfinite(lj["fisher_vegetation"]["max"]) and lj["fisher_vegetation"]["max"] < 0.3
    assert np.isfinite(lj["vegetation_b8"]["median"])
    cr = data["sen12mscr"]["summary"]["corr_vh_ndvi"]
    assert cr["n"] == 2 and cr["min"] < 0 < cr["max"]  # -0.65 and +0.52
    lc = data["sen12ms_lc"]["summary"]
    assert set(lc["per_class"]) == {"tree", "grass"}  # IGBP 4, 5, 8 -> tree; 9 -> grass
    assert np.isfinite(lc["pooled_fisher_vegetation_vh"])
