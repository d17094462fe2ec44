"""Periodic (grid) energy of a reconstruction's spectrum, relative to its clear reference.

A sub-pixel upsampler whose four sub-pixel kernels differ prints a grid of 2-pixel period into
the image; two such upsamplers in a row add a 4-pixel one. In the 2-D spectrum of an H x W
image such a grid sits on the lines of frequency 1/2 and 1/4 (and 3/4) cycles per pixel, i.e.
the rows ky in {H/4, H/2, 3H/4} and the columns kx in {W/4, W/2, 3W/4}. A natural image has
little energy there; the measure is the energy on those lines in the output, summed over
patches and the visible bands B2-B4, divided by the same energy of the clear reference.
A ratio near 1 means the output is as periodic as the ground truth; above
:data:`GRID_PEAK_LIMIT` the grid is visible.

The lines also carry broadband energy (noise, blur errors, colour shifts add to every
frequency), so the ratio alone cannot tell a grid from a generally larger error. The
``peak_contrast`` beside it divides the ratio by the same output / reference ratio on the
neighbouring lines (:data:`NEIGHBOUR_OFFSETS` bins beside each grid line): a grid is a sharp
peak and gives a contrast well above 1; broadband error raises both and gives about 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tdpcr.core.specs import S2_BANDS

#: Bands measured: the visible ones a reader sees in the figures (B2, B3, B4).
GRID_BANDS: tuple[int, ...] = tuple(S2_BANDS.index(b) for b in ("B2", "B3", "B4"))
#: Periods (pixels) of the grid lines measured.
GRID_PERIODS: tuple[int, ...] = (2, 4)
#: Highest output / reference ratio of grid-line energy that passes the grid check.
GRID_PEAK_LIMIT = 1.5
#: Offsets (FFT bins) of the neighbouring lines that the peak contrast compares against.
NEIGHBOUR_OFFSETS: tuple[int, ...] = (-2, -1, 1, 2)


def _lines(size: int, offsets: tuple[int, ...]) -> torch.Tensor:
    lines = torch.zeros(size, dtype=torch.bool)
    for period in GRID_PERIODS:
        for k in range(1, period):
            for offset in offsets:
                lines[(k * size // period + offset) % size] = True
    return lines


def grid_line_mask(height: int, width: int, neighbours: bool = False) -> torch.Tensor:
    """Boolean (H, W) mask of the FFT bins on the lines of period 2 and 4 pixels.

    With ``neighbours``, the bins on the lines :data:`NEIGHBOUR_OFFSETS` beside them instead
    (grid lines themselves excluded). Both sides must be multiples of 4 (every TDP-CR input
    is a multiple of 16).
    """
    if height % 4 or width % 4:
        raise ValueError(f"grid lines need sides divisible by 4, got {height}x{width}")
    grid = _lines(height, (0,))[:, None] | _lines(width, (0,))[None, :]
    if not neighbours:
        return grid
    near = _lines(height, NEIGHBOUR_OFFSETS)[:, None] | _lines(width, NEIGHBOUR_OFFSETS)[None, :]
    return near & ~grid


def line_energies(images: torch.Tensor, bands: tuple[int, ...] = GRID_BANDS) -> tuple[float, float]:
    """Spectral energy of ``images`` (B, C, H, W) on the grid lines and on the lines beside
    them (see :func:`grid_line_mask`), summed over B and bands, from one FFT.

    Each band's mean is removed first (the DC bin is not on the lines, but float rounding of
    a large mean would leak into every bin).
    """
    x = images[:, list(bands)].double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square()
    height, width = power.shape[-2:]
    on = grid_line_mask(height, width).to(power.device)
    near = grid_line_mask(height, width, neighbours=True).to(power.device)
    return float(power[..., on].sum()), float(power[..., near].sum())


def grid_energy(images: torch.Tensor, bands: tuple[int, ...] = GRID_BANDS) -> float:
    """Spectral energy on the grid lines of ``images`` (B, C, H, W), summed over B and bands."""
    return line_energies(images, bands)[0]


def grid_peak_ratio(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Grid-line energy of ``output`` over that of ``reference`` (both (B, 13, H, W))."""
    ref = grid_energy(reference)
    return grid_energy(output) / ref if ref > 0 else float("inf")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def peak_contrast(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Grid-line ratio over the neighbouring lines' ratio (about 1 without a periodic peak)."""
    meter = SpectrumMeter()
    meter.update(output, reference)
    return float(meter.compute()["peak_contrast"])


@dataclass
class SpectrumMeter:
    """Accumulates grid-line (and neighbouring-line) energy of outputs and references."""

    output_energy: float = 0.0
    reference_energy: float = 0.0
    output_neighbour_energy: float = 0.0
    reference_neighbour_energy: float = 0.0
    patches: int = 0

    def update(self, output: torch.Tensor, reference: torch.Tensor) -> None:
        on, near = line_energies(output.float())
        self.output_energy += on
        self.output_neighbour_energy += near
        on, near = line_energies(reference.float())
        self.reference_energy += on
        self.reference_neighbour_energy += near
        self.patches += int(output.shape[0])

    def compute(self) -> dict[str, float | int | bool | list[str]]:
        """Ratio, limit, verdict and peak contrast (the ``grid`` section of an evaluation)."""
        ratio = _ratio(self.output_energy, self.reference_energy)
        near = _ratio(self.output_neighbour_energy, self.reference_neighbour_energy)
        return {
            "ratio": ratio,
            "limit": GRID_PEAK_LIMIT,
            "passed": bool(ratio <= GRID_PEAK_LIMIT),
            "neighbour_ratio": near,
            "peak_contrast": _ratio(ratio, near),
            "output_energy": self.output_energy,
            "reference_energy": self.reference_energy,
            "patches": self.patches,
            "bands": [S2_BANDS[i] for i in GRID_BANDS],
            "periods_px": list(GRID_PERIODS),
        }


def grid_check(evaluations: dict[str, dict], out: Path) -> dict:
    """Collect each evaluation's ``grid`` section into ``results/grid_check.json``.

    Always writes the file and records the verdict; it does not raise on a failed check (the
    workflow keeps its outputs; the tests are what fail on a gridded model).
    """
    from tdpcr.core.errors import InputDataError
    from tdpcr.core.io import write_json_atomic

    methods = {}
    for name, evaluation in evaluations.items():
        if "grid" not in evaluation:
            raise InputDataError(f"evaluation of {name} has no grid energy (tdpcr evaluate --pgf)")
        grid = evaluation["grid"]
        keys = ("ratio", "passed", "patches", "neighbour_ratio", "peak_contrast")
        methods[name] = {k: grid[k] for k in keys if k in grid}
    result = {
        "limit": GRID_PEAK_LIMIT,
        "measure": "spectral energy of the output on the FFT lines of 2- and 4-pixel period "
        "(bands B2-B4, summed over test patches) over that of the clear reference",
        "peak_contrast": "that ratio over the same ratio on the lines "
        f"{list(NEIGHBOUR_OFFSETS)} bins beside them (~1: no periodic peak, broadband error)",
        "methods": methods,
        "passed": all(m["passed"] for m in methods.values()),
    }
    write_json_atomic(out, result)
    return result
