"""How the model runs on batches of windows: precision, memory format, backend.

One :class:`ModelRunner` wraps a module for inference and is what
:class:`~tdpcr.prediction.engine.Predictor` calls; every option is a ``predict.*`` config key
and a ``tdpcr predict`` flag:

* ``precision``: ``fp32``; ``bf16`` (autocast: convolutions and matmuls in bf16, reductions,
  softmax and the residual to the input in fp32); ``bf16-full`` (weights, inputs and every
  activation in bf16, outputs returned as fp32: no casts between layers, but the output
  carries bf16's 8-bit mantissa, i.e. a step of 1/256 of the value, ~0.4 %); or ``auto`` =
  bf16 on CUDA; on a CPU
  :data:`AUTO_CPU_PRECISION` where it has native bf16 dot products (AVX-512-BF16, AMX), else
  fp32 (without native units bf16 is emulated and slower than fp32); ``int8``
  (:mod:`tdpcr.prediction.quantize`: TDP-CR's encoder, decoder and fusion convolutions in
  int8, calibrated on the training store; built on the first batch, compiled unless
  ``backend`` is ``eager``, which runs the quantized graph as fp32 reference ops for checks).
  ``auto`` never picks int8: it is outside the accuracy guard (the Benchmarks page);
* ``channels_last``: NHWC memory format for model and inputs (oneDNN's and cuDNN's native
  layout for these convolutions);
* ``backend``: ``eager`` or ``compile`` (``torch.compile``, inductor, static shapes, frozen
  weights), or ``auto`` (:func:`~tdpcr.prediction.options.resolve_backend`: compile on a CPU
  for scenes of many windows). Freezing lets inductor treat the weights as constants: it
  prepacks them for oneDNN's convolutions and fuses the layer norms, gates and residual
  additions between them, which is what made it faster than eager alone (1.23-1.38x per batch
  at paper size; without freezing compiled was no faster), though not measurably inside a
  whole ``tdpcr predict`` here (the whole-tile benchmark). Compiling costs a warm-up (~1.5 min
  on a 2-core CPU, about half of it with inductor's on-disk cache warm) and pays off on
  large scenes only; batches are padded to one shape so it compiles once. The compiled
  model holds a frozen copy of the weights: a runner is made per model and never trained;
* ``local_stats``: test-time local statistics (:mod:`tdpcr.models.local_stats`): every
  global average pooling of the model averages a window of this many input pixels around
  each pixel instead of the whole window (``off``: the whole window, as in training).
  :class:`ModelRunner` takes the window in pixels (``train`` is resolved by the
  :class:`~tdpcr.prediction.engine.Predictor`, which knows the checkpoint's training crop)
  and switches the model before compiling it.

Outputs are always float32 numpy arrays, whatever the precision (the accumulators and the
writers are float32).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from tdpcr.core.errors import TdpcrError
from tdpcr.core.hardware import has_native_bf16
from tdpcr.models.local_stats import use_local_statistics
from tdpcr.prediction.options import ExecutionOptions, resolve_backend

#: Builds the int8 graph for a first batch: (optical, sar) -> (forward, description).
Quantize = Callable[[torch.Tensor, torch.Tensor], tuple[Any, dict[str, Any]]]

#: What ``auto`` means on a CPU with native bf16. Eager bf16 autocast measured slower than
#: fp32 on this project's 2-core Zen 5 (the casts around every convolution cost more than the
#: bf16 convolutions save: 5.1 vs 4.5 CPU-s per batch of 4 paper-size windows).
AUTO_CPU_PRECISION = "fp32"


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision ``precision`` runs at on ``device`` (``auto``: see the module doc)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    return AUTO_CPU_PRECISION if has_native_bf16() else "fp32"


def _autocast(device: torch.device, precision: str) -> Any:
    if precision != "bf16":  # fp32, and bf16-full whose tensors are bf16 already
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class ModelRunner:
    """A module prepared for inference with the given options; call it on numpy batches.

    ``runner(optical, sar, **kwargs)`` takes (B, C, h, w) float32 arrays and returns the
    module's output dict with every tensor as a float32 numpy array of the same layout
    (``keys`` selects which). With the ``compile`` backend, every call is padded to
    ``static_batch`` windows (the first call's batch size) so the graph compiles once.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        options: ExecutionOptions,
        windows: int | None = None,
        quantize: Quantize | None = None,
        local_window: int | None = None,
    ) -> None:
        """Prepare ``model``; ``windows`` (of the scene to come) lets ``backend: auto`` choose.

        ``quantize`` builds the int8 graph (precision ``int8``, which needs it).
        ``local_window``: the local-statistics window in pixels (None: global poolings), set
        on ``model`` itself (in place, until the next runner of the same model).
        """
        options.check()
        self.device = device
        self.local_window = local_window
        # Before compiling: the graph captures the poolings as they are now.
        use_local_statistics(model, local_window)
        self.options = options
        self.precision = resolve_precision(options.precision, device)
        self.backend = resolve_backend(options.backend, device.type, windows)
        self.quantize = quantize
        #: What the int8 build did (quantized layers, calibration cache); None otherwise.
        self.int8: dict[str, Any] | None = None
        if self.precision == "int8":
            if quantize is None:
                raise TdpcrError("--precision int8: this model has no int8 recipe")
            if device.type != "cpu":
                raise TdpcrError("--precision int8 runs on a CPU only (add --cpu)")
            if options.backend == "auto":
                # Only compiled does int8 pay (oneDNN int8 kernels); eager is for checks.
                self.backend = "compile"
        channels_last = options.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(device=device, memory_format=self.memory_format)
        self.input_dtype = torch.float32
        if self.precision == "bf16-full":
            self.model = self.model.to(torch.bfloat16)
            self.input_dtype = torch.bfloat16
        self.forward: Any = self.model
        if self.precision == "int8":
            self.forward = None  # built on the first batch, whose shape the graph takes
        elif self.backend == "compile":
            # Static shapes: one graph for the padded batch; no recompiles on the last batch.
            self.forward = torch.compile(self.model, dynamic=False, options={"freezing": True})
        self.static_batch: int | None = None
        #: Seconds of the first call (graph capture + compilation with ``compile``).
        self.warmup_seconds: float | None = None

    @property
    def description(self) -> dict[str, Any]:
        """The effective settings (for ``prediction.json`` and benchmarks)."""
        return {
            "precision": self.precision,
            "precision_requested": self.options.precision,
            "channels_last": self.options.channels_last,
            "backend": self.backend,
            "backend_requested": self.options.backend,
            "local_stats": self.local_window,
            "local_stats_requested": self.options.local_stats,
            "warmup_seconds": self.warmup_seconds,
            **({"int8": self.int8} if self.int8 is not None else {}),
        }

    def _pad(self, array: np.ndarray) -> np.ndarray:
        if self.backend != "compile" and self.precision != "int8":
            return array
        if self.static_batch is None:
            self.static_batch = array.shape[0]
        missing = self.static_batch - array.shape[0]
        if missing <= 0:
            return array
        # Repeat the last window: padded outputs are dropped, only the shape matters.
        return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])

    def __call__(
        self,
        optical: np.ndarray,
        sar: np.ndarray,
        keys: tuple[str, ...],
        derive: Callable[[dict[str, Any], torch.Tensor], dict[str, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> dict[str, np.ndarray]:
        """Forward (B, C, h, w) float32 arrays; float32 numpy outputs ``keys``, (B, ., h, w).

        ``derive(out, optical)``, if given, adds outputs computed from the model's (on the
        device, under the same precision), e.g. the quality layer from the PGF weights.
        """
        batch = optical.shape[0]
        fmt = self.memory_format
        opt, s1 = (
            torch.from_numpy(self._pad(array))
            .to(self.device, self.input_dtype)
            .contiguous(memory_format=fmt)
            for array in (optical, sar)
        )
        first = self.warmup_seconds is None
        t0 = time.perf_counter()
        if self.forward is None:
            self._build_int8(opt, s1)
        # int8: no_grad, not inference_mode: under inference_mode, inductor's freezing leaves
        # oneDNN's int8 weight prepacking to a fake-tensor pass that cannot run it.
        grad_off = torch.no_grad() if self.precision == "int8" else torch.inference_mode()
        with grad_off, _autocast(self.device, self.precision):
            out = self.forward(opt, s1, **kwargs)
            if derive is not None:
                out = {**out, **derive(out, opt)}
        result = {k: out[k][:batch].float().contiguous().cpu().numpy() for k in keys}
        if first:
            self.warmup_seconds = round(time.perf_counter() - t0, 3)
        return result

    def _build_int8(self, optical: torch.Tensor, sar: torch.Tensor) -> None:
        assert self.quantize is not None  # checked in __init__
        graph, self.int8 = self.quantize(optical, sar)
        self.forward = graph
        if self.backend == "compile":
            import torch._inductor.config as inductor

            # Freezing folds the int8 weights into prepacked oneDNN constants; without it the
            # quantize / dequantize pairs stay around every convolution (no int8 kernels). Set
            # process-wide: passed as a compile option, the int8 weight prepacking reached
            # inductor's fake-tensor pass unfolded and failed (torch 2.13). Every other
            # compile here freezes as well.
            inductor.freezing = True
            graph.graph = torch.compile(graph.graph, dynamic=False)
