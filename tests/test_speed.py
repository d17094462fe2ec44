"""Speed features of prediction: the I/O pipeline, model execution options, the accuracy guard.

The accuracy guard (issue 17): every fast path the CLI offers differs from fp32 eager by at
most 0.05 dB PSNR on test patches and by at most 0.1 % of land-cover pixels.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tdpcr.core.errors import TdpcrError
from tdpcr.core.hardware import cpu_peak
from tdpcr.prediction.options import ExecutionOptions, PredictOptions
from tdpcr.prediction.pipeline import BackgroundWriter, PhaseTimes, Prefetcher

# ---------------------------------------------------------------------------------------------
# Pipeline


@pytest.mark.parametrize("threads", [True, False])
def test_prefetcher_keeps_order_and_runs_ahead(threads: bool) -> None:
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        time.sleep(0.01)
        return item * item

    with Prefetcher(work, range(6), depth=2, threads=threads) as items:
        first = next(items)
        time.sleep(0.1)  # the reader goes on while the consumer is busy
        ahead = len(started)
        rest = list(items)
    assert [first, *rest] == [i * i for i in range(6)]
    if threads:
        # One item handed out, `depth` queued, one being computed: never the whole input.
        assert 2 <= ahead <= 4
    else:
        assert ahead == 1


def test_prefetcher_raises_the_reader_error_in_the_consumer() -> None:
    def work(item: int) -> int:
        if item == 2:
            raise ValueError("bad strip 2")
        return item

    seen = []
    with pytest.raises(ValueError, match="bad strip 2"):
        for value in Prefetcher(work, range(5), depth=1):
            seen.append(value)
    assert seen == [0, 1]


def test_prefetcher_close_stops_the_reader_early() -> None:
    calls = []
    items = Prefetcher(lambda i: calls.append(i) or i, range(1000), depth=1)
    next(items)
    items.close()
    assert len(calls) < 10
    assert not any(t.name == "tdpcr-reader" and t.is_alive() for t in threading.enumerate())


def test_background_writer_runs_jobs_in_order_off_the_caller_thread() -> None:
    done: list[tuple[int, str]] = []
    with BackgroundWriter(depth=1) as writer:
        for i in range(5):
            writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    assert [i for i, _ in done] == list(range(5))
    assert {name for _, name in done} == {"tdpcr-writer"}


def test_background_writer_raises_a_failed_job_and_runs_nothing_after_it() -> None:
    done: list[int] = []

    def fail() -> None:
        raise OSError("disk full")

    writer = BackgroundWriter(depth=4)
    writer.submit(lambda: done.append(0))
    writer.submit(fail)
    writer.submit(lambda: done.append(2))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [0]


def test_phase_times_add_up_across_threads() -> None:
    times = PhaseTimes()

    def spend() -> None:
        with times.timed("read"):
            time.sleep(0.02)

    workers = [threading.Thread(target=spend) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert times.as_dict()["read"] >= 0.06


# ---------------------------------------------------------------------------------------------
# Options


def test_execution_options_refuse_unknown_values_in_one_line() -> None:
    with pytest.raises(TdpcrError, match="--precision fp8: expected one of auto, fp32, bf16"):
        ExecutionOptions(precision="fp8").check()
    with pytest.raises(TdpcrError, match="--backend onnx: expected one of"):
        ExecutionOptions(backend="onnx").check()
    assert PredictOptions(precision="bf16").execution == ExecutionOptions(precision="bf16")


def test_cpu_peak_follows_the_flags() -> None:
    peak = cpu_peak(cores=2, clock_ghz=3.0)
    assert peak.fp32_flop_per_cycle in (8, 32, 64)
    assert peak.fp32_gflops == pytest.approx(2 * 3.0 * peak.fp32_flop_per_cycle)
    if peak.bf16_flop_per_cycle:
        assert peak.bf16_gflops >= peak.fp32_gflops
    assert "FLOP/cycle" in peak.method and peak.clock_source == "given"
    assert np.isfinite(cpu_peak().cores)
