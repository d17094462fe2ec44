"""The whole-tile benchmark's table in the documentation, rendered from its JSON.

``tdpcr bench tile-table --json results/bench/predict_tile.json --page docs/benchmarks.md``
rewrites the part of the page between :data:`BEGIN` and :data:`END`, so no figure in the
table is typed by hand (the docs test renders the committed JSON and compares).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tdpcr.core.io import open_atomic
from tdpcr.evaluation.report import generated_block, replace_block

BEGIN = "<!-- BEGIN generated tile benchmark: tdpcr bench tile-table; do not edit by hand -->"
END = "<!-- END generated tile benchmark -->"
GUARD_BEGIN = "<!-- BEGIN generated tile guard: tdpcr bench tile-table; do not edit by hand -->"
GUARD_END = "<!-- END generated tile guard -->"


def describe(options: dict[str, Any]) -> str:
    """Short text of a side's prediction options."""
    parts = [f"window {options.get('window', 256)} / overlap {options.get('overlap', 64)}"]
    local = options.get("local_stats", "off")
    parts.append("global statistics" if local in ("off", None) else f"local statistics {local}")
    parts.append(f"{options.get('precision', 'auto')} {options.get('backend', 'eager')}")
    parts.append(f"batch {options.get('batch_size')}")
    if not options.get("pipeline", True):
        parts.append("no I/O threads")
    if not options.get("malloc_reuse", True):
        parts.append("no malloc reuse")
    return ", ".join(parts)


def _guard_cells(guard: dict[str, Any] | None, name: str) -> list[str]:
    if not guard or name not in guard.get("paths", {}):
        return ["", ""]
    path = guard["paths"][name]
    ok = "" if path["within_guard"] else " (outside)"
    return [
        f"{path['psnr_delta_db']:+.3f}{ok}",
        f"{100 * path['landcover_changed_fraction']:.3f} %",
    ]


def render_tile_table(result: dict[str, Any]) -> str:
    """Markdown table of every side of a ``predict_tile`` JSON."""
    names = list(result["sides"])
    reference = names[0]
    header = [
        "side", "settings", "tile windows", "s / window (fit)", "full tile", "speed-up, wall",
        "speed-up, CPU time", "GFLOP/s (share of fp32 peak)", "peak RSS", "PSNR vs reference, dB",
        "land cover changed",
    ]  # fmt: skip
    rows = []
    for name in names:
        side = result["sides"][name]
        share = side.get("fraction_of_fp32_peak")
        gflops = f"{side['achieved_gflops_inference']:.1f}"
        if share is not None:
            gflops += f" ({100 * share:.0f} %)"
        cells = [
            f"`{name}`",
            describe(side["options"]),
            str(side.get("tile_windows", result.get("tile_windows", ""))),
            f"{side['fit_seconds_per_window']:.3f}",
            f"{side['tile_minutes']:.1f} min",
            f"{side['tile_speedup_over_' + reference]:.2f}x",
            f"{side['cpu_time_speedup_over_' + reference]:.2f}x",
            gflops,
            f"{side['peak_rss_mb'] / 1000:.2f} GB",
            *_guard_cells(result.get("guard"), name),
        ]
        if name == "product":
            cells = [f"**{c}**" if c else c for c in cells]
        rows.append(cells)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_guard_table(result: dict[str, Any]) -> str:
    """Markdown table of the paths whose accuracy only was measured (not sides)."""
    guard = result.get("guard") or {}
    names = [name for name in guard.get("paths", {}) if name not in result["sides"]]
    lines = [
        "| path | PSNR, dB | vs reference, dB | land cover changed | inside the guard |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        path = guard["paths"][name]
        lines.append(
            f"| `{name}` | {path['psnr_db']:.3f} | {path['psnr_delta_db']:+.3f} | "
            f"{100 * path['landcover_changed_fraction']:.3f} % | "
            f"{'yes' if path['within_guard'] else 'no'} |"
        )
    return "\n".join(lines)


def update_page(json_path: Path, page: Path) -> str:
    """Rewrite the table blocks of ``page`` from ``json_path``; returns the speed table."""
    result = json.loads(Path(json_path).read_text())
    block = render_tile_table(result)
    text = replace_block(Path(page).read_text(), block, str(page), BEGIN, END)
    if GUARD_BEGIN in text:
        text = replace_block(text, render_guard_table(result), str(page), GUARD_BEGIN, GUARD_END)
    with open_atomic(page) as fh:
        fh.write(text)
    return block


def page_blocks(page: Path) -> tuple[str, str]:
    """The generated speed and guard tables of ``page`` (for the docs test)."""
    text = Path(page).read_text()
    return generated_block(text, BEGIN, END), generated_block(text, GUARD_BEGIN, GUARD_END)
