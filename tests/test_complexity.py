"""Tests of tdpcr.benchmarks: the complexity CSV and the inference benchmark, at tiny sizes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tdpcr.benchmarks import complexity, inference
from tdpcr.core.config import shipped_config
from tdpcr.models import DSen2CR

#: The shipped tiny config's model sizes (config/tiny.yaml), not a copy of them.
TINY_SIZES: dict = shipped_config("tiny")["models"]
#: Stand-in "paper size" so the test does not run the 1.2 TMAC DSen2-CR.
FAKE_PAPER: dict = {**TINY_SIZES, "dsen2cr": {"features": 16, "num_blocks": 1}}

EXPECTED_ROWS = [
    ("tdpcr", "cr-only"),
    ("tdpcr", "full"),
    ("dsen2cr", "cr"),
    ("glfcr", "cr"),
    ("hpncr", "cr"),
    ("emrdm", "per-evaluation"),
    ("cloudseg", "multi-task"),
    ("segformer", "optical-13"),
    ("segformer", "sar-2"),
]


def test_write_complexity_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(complexity, "paper_sizes", lambda: FAKE_PAPER)
    out = tmp_path / "results" / "complexity.csv"
    returned = complexity.write_complexity_csv(TINY_SIZES, out, image_size=64)

    assert sorted(p.name for p in out.parent.iterdir()) == ["complexity.csv"]  # no temp left
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == complexity.COLUMNS
        rows = list(reader)
    assert len(rows) == len(returned) == 18
    keys = [(r["model"], r["variant"], r["size"]) for r in rows]
    assert keys == [(m, v, s) for s in ("configured", "paper") for m, v in EXPECTED_ROWS]

    by_key = {k: r for k, r in zip(keys, rows, strict=True)}
    for r in rows:
        assert int(r["params"]) > 0 and int(r["macs"]) > 0
        assert float(r["macs_G"]) == pytest.approx(int(r["macs"]) / 1e9, abs=1e-4)
        assert float(r["flops_G"]) == pytest.approx(2 * int(r["macs"]) / 1e9, abs=1e-4)
        # Every product counted, and the cost of a whole image (EMRDM: its 5 evaluations).
        evaluations = 5 if r["model"] == "emrdm" else 1
        assert int(r["evaluations"]) == evaluations
        assert float(r["macs_G_full"]) >= float(r["macs_G"])
        if r["model"] != "emrdm":
            assert r["macs_G_full"] == r["macs_G"]
        assert float(r["macs_G_per_image"]) == pytest.approx(
            evaluations * float(r["macs_G_full"]), abs=1e-3
        )
        if r["size"] == "configured" or r["model"] == "segformer":
            assert r["paper_params_M"] == r["paper_flops_G"] == ""
    assert by_key[("tdpcr", "cr-only", "paper")]["paper_params_M"] == "5.92"
    assert by_key[("tdpcr", "cr-only", "paper")]["paper_flops_G"] == "34.3"
    assert by_key[("tdpcr", "full", "paper")]["paper_flops_G"] == "38.2"
    assert by_key[("dsen2cr", "cr", "paper")]["paper_flops_G"] == "1241.2"
    assert by_key[("glfcr", "cr", "paper")]["paper_flops_G"] == "249.7"
    assert by_key[("emrdm", "per-evaluation", "paper")]["paper_params_M"] == "39.13"
    assert by_key[("cloudseg", "multi-task", "paper")]["paper_flops_G"] == "105.9"
    # EMRDM's attention is invisible to fvcore: the full count adds it.
    emrdm = by_key[("emrdm", "per-evaluation", "configured")]
    assert float(emrdm["macs_G_full"]) > float(emrdm["macs_G"])
    # The head adds parameters and MACs; SAR input is cheaper than 13 bands for SegFormer.
    cr, full = by_key[("tdpcr", "cr-only", "configured")], by_key[("tdpcr", "full", "configured")]
    assert int(full["params"]) > int(cr["params"])
    assert int(full["macs"]) > int(cr["macs"])
    seg13 = by_key[("segformer", "optical-13", "configured")]
    seg2 = by_key[("segformer", "sar-2", "configured")]
    assert int(seg13["params"]) > int(seg2["params"])
    assert seg13["input_shape"] == "1x13x64x64"
    # Configured and fake-paper DSen2-CR differ, so both sizes were really built.
    assert (
        by_key[("dsen2cr", "cr", "configured")]["params"]
        != by_key[("dsen2cr", "cr", "paper")]["params"]
    )


def test_dsen2cr_macs_match_hand_count() -> None:
    """fvcore counts conv MACs without biases: (15*9*F + 2*B*F*F*9 + F*9*13) per pixel."""
    f, b = 8, 2
    model = DSen2CR(features=f, num_blocks=b)
    params, macs = complexity.count_params_macs(
        model, (torch.rand(1, 13, 32, 32), torch.rand(1, 2, 32, 32))
    )
    assert macs == (15 * 9 * f + 2 * b * f * f * 9 + f * 9 * 13) * 32 * 32
    assert params == sum(p.numel() for p in model.parameters())


def test_inference_benchmark_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "inference.json"
    result = inference.write_inference_benchmark(
        out,
        sizes=TINY_SIZES,
        batch_sizes=(1, 2),
        image_size=32,
        device="cpu",
        repeats=2,
        warmup=0,
    )
    assert json.loads(out.read_text()) == result
    assert result["device"] == "cpu" and result["precision"] == "fp32"
    assert result["torch_threads"] >= 1
    got = {(r["model"], r["batch_size"]) for r in result["results"]}
    assert got == {(m, b) for m in ("tdpcr", "tdpcr_full", "dsen2cr") for b in (1, 2)}
    for r in result["results"]:
        assert r["samples_per_s"] > 0 and r["peak_memory_MiB"] > 0
        assert 1 <= len(r["seconds"]) <= 2
    assert set(result["ratios"]) == {"tdpcr/dsen2cr", "tdpcr_full/dsen2cr"}
    assert set(result["ratios"]["tdpcr/dsen2cr"]) == {"1", "2"}
