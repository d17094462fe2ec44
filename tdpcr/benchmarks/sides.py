"""Run one side of a benchmark in a fresh process: ``python -m tdpcr.benchmarks.sides``.

A side is a plain module-level function ``side(spec: dict) -> dict`` of a benchmark module.
:func:`run_side` starts a new interpreter that imports it, calls it on ``spec`` and prints
its result with the process's own measurements, so each side's peak memory is its own (not
the parent's, which may hold a generated scene) and nothing measured is kept in a string:

- ``seconds``: wall time of the call (imports of the side's module excluded);
- ``cpu_seconds``: user + system CPU time of the call; unlike wall time it hardly depends on
  what else the machine runs, so CPU-time ratios stay meaningful on a shared machine;
- ``peak_rss_mb``: the process's resident-set high-water mark (VmHWM);
- ``load_average_1min``: at the start and end of the call.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tdpcr.core.runtime import peak_rss_mb

Side = Callable[[dict[str, Any]], dict[str, Any]]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of the whole machine from ``/proc/stat`` (None elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other guests in between: on a
    virtual machine this slows everything without any process of ours to see."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def measure(side: Side, spec: dict[str, Any]) -> dict[str, Any]:
    """Call ``side(spec)`` here and add the measurements listed in the module docstring."""
    load0, cpu0, t0 = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
    ticks0 = cpu_ticks()
    result = side(spec)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu_seconds() - cpu0,
        "load_average_1min": [load0, os.getloadavg()[0]],
        "cpu_steal_share": steal_share(ticks0, cpu_ticks()),
        **result,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_side(side: Side, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``side(spec)`` in a fresh interpreter and return its measured result."""
    target = f"{side.__module__}:{side.__qualname__}"
    result = subprocess.run(
        [sys.executable, "-m", "tdpcr.benchmarks.sides", target, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark side {target} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    """``python -m tdpcr.benchmarks.sides MODULE:FUNCTION SPEC_JSON``: print the result."""
    target, spec = argv
    module, name = target.split(":")
    side = getattr(importlib.import_module(module), name)
    print(json.dumps(measure(side, json.loads(spec))))


if __name__ == "__main__":
    main(sys.argv[1:])
