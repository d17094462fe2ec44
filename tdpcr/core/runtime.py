"""Where code runs: CPUs, device, threads, data parallelism, and moving batches there.

Training, evaluation, prediction and the benchmarks all take their device and thread budget
from here, so ``--threads`` means the same thing for every command.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tdpcr.core.hardware import available_cpus  # noqa: F401  (re-exported)


def select_device(force_cpu: bool = False) -> torch.device:
    """CUDA when usable and not ``force_cpu``, else the CPU."""
    if torch.cuda.is_available() and not force_cpu:
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(threads: int) -> int:
    """Give torch ``threads`` intra-op threads, capped by the CPUs available; return the count."""
    count = max(1, min(int(threads), available_cpus()))
    torch.set_num_threads(count)
    return count


def to_device(
    batch: Mapping[str, Any], device: torch.device, *, channels_last: bool = False
) -> dict[str, Any]:
    """Tensors of ``batch`` on ``device`` (non-blocking); images channels-last if asked."""
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


def autocast(cuda: bool) -> torch.autocast:
    """bf16 autocast on CUDA, a no-op elsewhere (CPU runs in float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)


@dataclass
class Runtime:
    """Where training runs: device, data-parallel rank and the CPU thread budget."""

    device: torch.device
    rank: int = 0
    world: int = 1
    torch_threads: int = 1
    loader_workers: int = 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """A batch on this runtime's device (channels-last images on CUDA)."""
        return to_device(batch, self.device, channels_last=self.cuda)


def setup_runtime(threads: int, *, force_cpu: bool = False) -> Runtime:
    """Pick the device (CUDA when usable), join torchrun's process group, split threads.

    ``threads`` is the rule's thread count; it is capped by the CPUs really available, so
    ``--cores 8`` on a 2-core machine does not oversubscribe. A quarter of them (none below 4)
    feed the data loader; the rest run torch's intra-op kernels.
    """
    # Under torchrun the job's CPUs are shared by its LOCAL_WORLD_SIZE processes.
    local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cpus = max(1, min(threads, available_cpus()) // local_world)
    workers = cpus // 4
    torch_threads = max(1, cpus - workers)
    torch.set_num_threads(torch_threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = select_device(force_cpu).type == "cuda"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(local_rank)
        print(f"device: {device} ({name}), rank {rank}/{world}", flush=True)
    else:
        device = torch.device("cpu")
        reuse_cpu_memory_on(device)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        reason = f"CUDA_VISIBLE_DEVICES={visible}, no usable GPU" if visible else "no GPU"
        print(
            f"device: cpu ({reason}), {torch_threads} torch threads, {workers} loader "
            f"workers, rank {rank}/{world}",
            flush=True,
        )
    return Runtime(device, rank, world, torch_threads, workers)


# --------------------------------------------------------------------------- CPU memory
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def reuse_freed_cpu_memory() -> bool:
    """Make glibc malloc keep and reuse freed memory instead of mmap/munmap per large block.

    Process-wide and lasting: large blocks come from the heap (M_MMAP_MAX = 0) and up to 2 GiB
    of free heap stays mapped (M_TRIM_THRESHOLD). This removes the page-fault storm of
    allocating multi-MiB activations in every forward/backward pass on CPU. Returns False
    where glibc's mallopt is not available.
    """
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok


def reuse_cpu_memory_on(device: torch.device) -> bool:
    """``reuse_freed_cpu_memory`` when ``device`` is the CPU (training, evaluation, figures).

    They allocate multi-MiB activations every step; without it each one is a fresh mmap and a
    page-fault storm: validating DSen2-CR at 256 x 256 spent as much time in the kernel as in
    its convolutions (40 steps with 4 validations: 144 s system CPU before, 5 s after).
    """
    return device.type == "cpu" and reuse_freed_cpu_memory()


def release_free_cpu_memory() -> None:
    """Hand free heap memory back to the OS (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    VmHWM (/proc/self/status): unlike getrusage's ru_maxrss it is not inherited across
    fork + exec, and it can be reset (:func:`reset_peak_rss`). ru_maxrss elsewhere.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0**2 if sys.platform == "darwin" else 1024.0)  # bytes on macOS, else kB


def reset_peak_rss() -> str:
    """Reset the RSS high-water mark if the OS allows it; returns how peak memory is read."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # 5 = reset the peak resident set size (Linux >= 4.0)
        return "rss_hwm"
    except OSError:
        return "ru_maxrss_process_lifetime"
