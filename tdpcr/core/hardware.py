"""What the CPU can do: instruction-set flags, clock, and the peak FLOP rate they imply.

Read from ``/proc/cpuinfo`` (Linux) and ``lscpu`` when present; no torch here, so the
benchmarks and the prediction engine share one answer to "does this CPU have native bf16?"
and "how far from the hardware's limit is the model?".

Peak FLOP/s method (stated in every benchmark that reports it): cores x clock x FLOP per
cycle per core, where FLOP per cycle is that of the widest vector FMA the flags announce,
counting two FMA pipes per core (Zen 4/5, Intel server cores since Skylake-SP; a core with one
512-bit pipe reaches half):

* fp32: AVX-512F 2 x 16 lanes x 2 = 64, AVX2 + FMA 2 x 8 x 2 = 32, else SSE 2 x 4 = 8;
* bf16: twice the fp32 figure with AVX-512-BF16 (``vdpbf16ps`` does two multiply-adds per
  fp32 lane), 1024 per cycle with AMX-BF16 (Sapphire Rapids tile multiply), else none.

The clock is ``lscpu``'s "CPU max MHz" when the OS knows it, else the "cpu MHz" that
``/proc/cpuinfo`` reports (under a hypervisor usually the nominal TSC rate, below the boost
clock), so the peak is an estimate for context, not a measured limit.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass

#: FMA pipes per core assumed by :func:`cpu_peak` (see the module docstring).
FMA_PIPES = 2


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model_name() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_native_bf16() -> bool:
    """True where the CPU computes bf16 dot products natively (AVX-512-BF16 or AMX-BF16)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _lscpu_max_mhz() -> float | None:
    if shutil.which("lscpu") is None:
        return None
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        if line.startswith("CPU max MHz:"):
            try:
                return float(line.split(":", 1)[1])
            except ValueError:
                return None
    return None


def _cpuinfo_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


@dataclass(frozen=True)
class CpuPeak:
    """Estimated peak FLOP/s of ``cores`` cores (method in the module docstring)."""

    cpu: str
    cores: int
    clock_ghz: float | None
    clock_source: str
    fp32_flop_per_cycle: int
    bf16_flop_per_cycle: int
    fp32_gflops: float | None
    bf16_gflops: float | None
    vector_isa: str
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_peak(cores: int | None = None, clock_ghz: float | None = None) -> CpuPeak:
    """Peak fp32 and bf16 GFLOP/s of ``cores`` cores (default: the CPUs available)."""
    flags = cpu_flags()
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
    if "avx512f" in flags:
        isa, lanes = "AVX-512F", 16
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "AVX2+FMA", 8
    else:
        isa, lanes = "SSE", 4
    fp32 = FMA_PIPES * lanes * (2 if isa != "SSE" else 1)
    if "amx_bf16" in flags:
        bf16, isa = 1024, isa + " + AMX-BF16"
    elif "avx512_bf16" in flags:
        bf16, isa = 2 * fp32, isa + " + AVX-512-BF16"
    else:
        bf16 = 0
    source = "given"
    if clock_ghz is None:
        mhz = _lscpu_max_mhz()
        source = "lscpu CPU max MHz"
        if mhz is None:
            mhz, source = _cpuinfo_mhz(), "/proc/cpuinfo cpu MHz"
        clock_ghz = None if mhz is None else mhz / 1000.0
        if clock_ghz is None:
            source = "unknown"

    def peak(per_cycle: int) -> float | None:
        if clock_ghz is None or per_cycle == 0:
            return None
        return round(cores * clock_ghz * per_cycle, 1)

    return CpuPeak(
        cpu=cpu_model_name(),
        cores=cores,
        clock_ghz=None if clock_ghz is None else round(clock_ghz, 3),
        clock_source=source,
        fp32_flop_per_cycle=fp32,
        bf16_flop_per_cycle=bf16,
        fp32_gflops=peak(fp32),
        bf16_gflops=peak(bf16),
        vector_isa=isa,
        method=(
            f"cores x clock x FLOP/cycle; FLOP/cycle from the widest FMA in /proc/cpuinfo "
            f"flags ({isa}), {FMA_PIPES} FMA pipes per core; clock from {source}"
        ),
    )


def available_cpus() -> int:
    """CPUs this process may use (affinity, i.e. a SLURM allocation), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_share_threads(granted: int, scheduler_cores: int | None, cpus: int | None = None) -> int:
    """Threads a job should run with: its share of the real CPUs behind its scheduler slots.

    Snakemake hands out ``--cores`` slots; ``snakemake --cores 8`` on a 2-CPU machine runs
    jobs whose slots add up to 8 on 2 CPUs. A job granted ``granted`` of ``scheduler_cores``
    slots then gets ``granted * cpus / scheduler_cores`` threads (at least one), so jobs
    running side by side never ask for more threads than there are CPUs: two training jobs of
    4 slots each run one thread each, which on this project's 2-CPU reference machine trains
    1.8x as many steps per second as one job of two threads (PyTorch's CPU convolutions at
    these sizes gain only 1.2x from a second thread, and two OpenMP teams on two CPUs lose
    far more to oversubscription). With as many slots as CPUs, or unknown, ``granted`` stays.
    """
    cpus = available_cpus() if cpus is None else cpus
    if not scheduler_cores or scheduler_cores <= cpus:
        return max(1, granted)
    return max(1, granted * cpus // scheduler_cores)
