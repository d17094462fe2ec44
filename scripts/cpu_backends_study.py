"""Which CPU inference backend is fastest for TDP-CR at paper size, with the same outputs.

Issue 17 asked to try an ONNX Runtime or an OpenVINO export against PyTorch and to keep what
wins. This script times one forward pass of a batch of paper-size 256 x 256 windows (TDP-CR
Full, random init: speed does not depend on the weights) for each backend and compares its
outputs with fp32 eager PyTorch (max |image difference|, share of land-cover labels kept):

* ``eager``: PyTorch eager, channels_last (what ``tdpcr predict --backend eager`` runs);
* ``compile``: ``torch.compile`` with frozen weights (``tdpcr predict --backend compile``);
* ``openvino`` / ``openvino-bf16``: ``openvino.convert_model`` of the module, LATENCY hint,
  inference precision f32 / bf16;
* ``onnxruntime``: ``torch.onnx.export`` (TorchScript exporter, opset 17), CPU provider.

ONNX Runtime and OpenVINO are not tdpcr dependencies; install them to run those backends
(``pip install onnxruntime onnx openvino``). Each timing is the best of ``--repeats`` calls
after one warm-up call. Measure on a quiet machine.

Usage::

    PYTHONPATH=. python scripts/cpu_backends_study.py --batch 8 \\
        --backends eager,compile,openvino,onnxruntime --out results/studies/cpu_backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tdpcr.benchmarks.complexity import paper_sizes
from tdpcr.core.runtime import reuse_freed_cpu_memory
from tdpcr.core.specs import CLASS_NAMES
from tdpcr.models import create_model

Outputs = tuple[np.ndarray, np.ndarray]


class ImageAndLogits(nn.Module):
    """The model's dict output as a tuple (image, logits), which exporters need."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(optical, sar)
        return out["image"], out["logits"]


def torch_backend(module: nn.Module, compiled: bool) -> Callable[..., Callable[[], Outputs]]:
    def prepare(optical: np.ndarray, sar: np.ndarray) -> Callable[[], Outputs]:
        fmt = torch.channels_last
        net = module.to(memory_format=fmt)
        if compiled:
            net = torch.compile(net, dynamic=False, options={"freezing": True})
        o, s = (torch.from_numpy(a).contiguous(memory_format=fmt) for a in (optical, sar))

        def run() -> Outputs:
            with torch.inference_mode():
                image, logits = net(o, s)
            return image.numpy(), logits.numpy()

        return run

    return prepare


def openvino_backend(module: nn.Module, precision: str) -> Callable[..., Callable[[], Outputs]]:
    def prepare(optical: np.ndarray, sar: np.ndarray) -> Callable[[], Outputs]:
        import openvino as ov

        example = (torch.from_numpy(optical), torch.from_numpy(sar))
        converted = ov.convert_model(module, example_input=example)
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        compiled = ov.Core().compile_model(converted, "CPU", config)
        request = compiled.create_infer_request()

        def run() -> Outputs:
            out = request.infer([optical, sar])
            return out[compiled.output(0)], out[compiled.output(1)]

        return run

    return prepare


def onnxruntime_backend(module: nn.Module) -> Callable[..., Callable[[], Outputs]]:
    def prepare(optical: np.ndarray, sar: np.ndarray) -> Callable[[], Outputs]:
        import onnxruntime as ort

        path = Path(tempfile.mkdtemp()) / "tdpcr.onnx"
        example = (torch.from_numpy(optical), torch.from_numpy(sar))
        torch.onnx.export(
            module, example, str(path), input_names=["optical", "sar"],
            output_names=["image", "logits"], dynamo=False, opset_version=17,
        )  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run() -> Outputs:
            image, logits = session.run(None, {"optical": optical, "sar": sar})
            return image, logits

        return run

    return prepare


def best_of(run: Callable[[], Outputs], repeats: int) -> tuple[float, float, float, Outputs]:
    """Warm-up call's wall s, then (wall s, CPU s) of the fastest of ``repeats`` calls after
    it, and its output."""
    t0 = time.perf_counter()
    out = run()
    first = time.perf_counter() - t0
    timings = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        timings.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(timings)
    return first, wall, cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="eager,compile,openvino,onnxruntime")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    reuse_freed_cpu_memory()  # as tdpcr predict does
    torch.manual_seed(0)
    sizes = {**paper_sizes()["tdpcr"], "num_classes": len(CLASS_NAMES), "pgf_mode": "both"}
    module = ImageAndLogits(create_model("tdpcr", **sizes)).eval()
    rng = np.random.default_rng(0)
    optical = rng.random((args.batch, 13, 256, 256), dtype=np.float32)
    sar = rng.random((args.batch, 2, 256, 256), dtype=np.float32)
    with torch.inference_mode():
        ref_image, ref_logits = (t.numpy() for t in module(*map(torch.from_numpy, (optical, sar))))
    backends = {
        "eager": torch_backend(module, compiled=False),
        "compile": torch_backend(module, compiled=True),
        "openvino": openvino_backend(module, "f32"),
        "openvino-bf16": openvino_backend(module, "bf16"),
        "onnxruntime": onnxruntime_backend(module),
    }
    results = {}
    for name in args.backends.split(","):
        t0 = time.perf_counter()
        run = backends[name](optical, sar)
        prepare_seconds = time.perf_counter() - t0
        first, wall, cpu, (image, logits) = best_of(run, args.repeats)
        results[name] = {
            "prepare_seconds": round(prepare_seconds, 1),  # export / convert / compile_model
            "first_call_seconds": round(first, 1),  # torch.compile compiles here
            "wall_seconds_per_batch": round(wall, 3),
            "cpu_seconds_per_batch": round(cpu, 3),
            "seconds_per_window": round(wall / args.batch, 4),
            "max_abs_image_difference": float(np.abs(image - ref_image).max()),
            "labels_kept": float((logits.argmax(1) == ref_logits.argmax(1)).mean()),
        }
        print(name, json.dumps(results[name]), flush=True)
    eager = results.get("eager", {}).get("wall_seconds_per_batch")
    for result in results.values():
        if eager:
            result["speedup_over_eager"] = round(eager / result["wall_seconds_per_batch"], 3)
    report = {
        "batch": args.batch,
        "window": 256,
        "model": "TDP-CR Full, paper size, random init",
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "backends": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
