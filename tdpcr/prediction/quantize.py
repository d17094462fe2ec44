"""int8 inference of TDP-CR (``--precision int8``): PyTorch 2 export quantization.

The model is captured with :func:`torch.export.export` at the prediction's batch shape,
annotated by torchao's ``X86InductorQuantizer`` (static quantization: int8 activations with one
scale per tensor, int8 weights with one scale per output channel), calibrated on
:data:`CALIBRATION_WINDOWS` windows of the training tile store, converted, and compiled by
:class:`~tdpcr.prediction.execution.ModelRunner` (inductor with frozen weights lowers the
quantize / convolution / dequantize patterns to oneDNN's int8 convolutions, VNNI on AVX-512).
With ``backend: eager`` the converted graph runs as reference quantize / dequantize ops in
fp32: the same rounding, no speed-up; it is meant for checks.

Which layers are int8 (TDP-CR):

* quantized: every convolution of the optical and SAR encoders (intro convs, NAFNet blocks,
  downsampling), of the decoder (upsampling, NAFNet blocks) and the ``psi`` convolutions of
  each prompt-guided fusion (PGF), plus the operators the quantizer propagates int8 through
  between them (additions, ...);
* kept in floating point (:func:`float_module_names`): the prompt generator (its prompt
  drives every fusion and the quality layer), each PGF's global and local branches (the
  logits of the modality softmax; the softmax itself is never quantized), the reconstruction
  output convolution (``ending``, whose output is added to the input) and the segmentation
  head (the class scores, where near ties flip labels).

Calibration is deterministic: windows spread evenly over the store's ``train`` split, each
cropped at a fixed seed. Its result (the observers' ranges, a few KB) is cached in the
checkpoint folder as ``int8-calibration-<key>.safetensors``, ``<key>`` a digest of the
checkpoint's weights, the window, the calibration settings, the store's training patches and
the torch / torchao versions; the digest is also recorded inside the file. The cache sits
beside the weights rather than in them because it depends on the window and the store, which
a checkpoint does not know, and leaves ``model.safetensors`` and its recorded digest as saved.
A cache whose record, observers or ranges do not match is rebuilt, never trusted; a folder
that cannot be written (e.g. an MLflow download) only costs recalibrating each run.

torchao is imported here only, so no other path pays for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tdpcr.core.errors import InputDataError, TdpcrError

#: Windows of the training split the activation ranges are calibrated on.
CALIBRATION_WINDOWS = 32
#: Seed of the calibration crops (fixed: the same store gives the same ranges).
CALIBRATION_SEED = 0
#: File name prefix of the cached calibration in the checkpoint folder.
CACHE_PREFIX = "int8-calibration-"
#: Observer state keys carry this (the prepared graph's observer modules).
_OBSERVER = "activation_post_process"
#: Models with a quantization recipe.
INT8_MODELS = ("tdpcr",)


def float_module_names(model: nn.Module) -> list[str]:
    """Submodules of a TDP-CR that stay in floating point (see the module docstring)."""
    names = ["prompt_generator", "ending", "seg_head"]
    for i, fusion in enumerate(getattr(model, "pgf", ())):
        for branch in ("global_branch", "local_branch"):
            if getattr(fusion, branch, None) is not None:
                names.append(f"pgf.{i}.{branch}")
    return [n for n in names if _has_submodule(model, n)]


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        return model.get_submodule(name) is not None
    except AttributeError:
        return False


class _AllOutputs(nn.Module):
    """TDP-CR returning every output as a flat tuple (export needs one fixed signature)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(optical, sar, return_prompt=True, return_weights=True)
        logits = out.get("logits")
        prompt = out.get("prompt")
        # Absent outputs as empty tensors: the tuple keeps one layout for every variant.
        empty = optical.new_zeros(0)
        return (
            out["image"],
            empty if logits is None else logits,
            empty if prompt is None else prompt,
            *out["weights"],
        )


class Int8Forward:
    """Calls a quantized graph and gives back TDP-CR's output dict (the keys asked for)."""

    def __init__(self, graph: Callable[..., Any]) -> None:
        self.graph = graph

    def __call__(
        self,
        optical: torch.Tensor,
        sar: torch.Tensor,
        return_prompt: bool = False,
        return_weights: bool = False,
    ) -> dict[str, Any]:
        image, logits, prompt, *weights = self.graph(optical, sar)
        out: dict[str, Any] = {"image": image}
        if logits.numel():
            out["logits"] = logits
        if return_prompt:
            out["prompt"] = prompt if prompt.numel() else None
        if return_weights:
            out["weights"] = list(weights)
        return out


def _import_torchao() -> Any:
    # torchao logs, at import, every optional CUDA kernel library it cannot load: noise on a CPU.
    quiet = logging.getLogger("torchao")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise TdpcrError(
            f"--precision int8 needs torchao (pip install torchao==0.18.0): {err}"
        ) from None
    finally:
        quiet.setLevel(level)
    return quantize_pt2e, x86


def calibration_windows(store: Path, window: int, count: int = CALIBRATION_WINDOWS) -> tuple:
    """``count`` deterministic (optical, sar) float32 windows of the store's ``train`` split.

    Patches spread evenly over the split, each cropped to ``window`` at a seed of its own;
    fewer patches than ``count`` are visited again with other crops.
    """
    from tdpcr.data.dataset import TileDataset

    dataset = TileDataset(store, "train", pieces=("s2_cloudy", "s1"), crop=None)
    if dataset.patch_size < window:
        raise InputDataError(
            f"{store}: int8 calibration needs patches of at least the window "
            f"({dataset.patch_size} < {window}); predict with a smaller --window"
        )
    dataset.crop = window
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    samples = [dataset[(int(p), CALIBRATION_SEED + i)] for i, p in enumerate(picks)]
    optical = torch.stack([s["s2_cloudy"] for s in samples])  # type: ignore[misc]
    sar = torch.stack([s["s1"] for s in samples])  # type: ignore[misc]
    return optical, sar, [str(s["patch_id"]) for s in samples]


def cache_key(weights_digest: str, window: int, patch_ids: list[str], floats: list[str]) -> str:
    """Digest naming one calibration: weights, window, windows visited, float layers, versions."""
    import torchao

    record = {
        "weights": weights_digest,
        "window": window,
        "windows": CALIBRATION_WINDOWS,
        "seed": CALIBRATION_SEED,
        "patches": patch_ids,
        "float": floats,
        "torch": torch.__version__,
        "torchao": torchao.__version__,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone().contiguous()
        for k, v in prepared.state_dict().items()
        if _OBSERVER in k and v.is_floating_point()
    }


def read_cache(path: Path, key: str, expected: dict[str, torch.Tensor]) -> dict | None:
    """The cached observer state at ``path`` if it is whole and matches; else None.

    Matching: the digest recorded inside equals ``key``, the tensor names equal the freshly
    prepared graph's observers (``expected``), and every range is finite with min <= max.
    """
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            if (fh.metadata() or {}).get("key") != key:
                return None
            state = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except Exception:  # a truncated or foreign file: safetensors raises its own errors
        return None
    if set(state) != set(expected) or not state:
        return None
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            return None
        if name.endswith("min_val"):
            high = state.get(name[: -len("min_val")] + "max_val")
            if high is None or high.shape != tensor.shape or (tensor > high).any():
                return None
    return state


def write_cache(path: Path, key: str, state: dict[str, torch.Tensor]) -> bool:
    """Write the observer state atomically; False (and a note on stderr) if the folder refuses."""
    from safetensors.torch import save

    from tdpcr.core.io import write_bytes_atomic

    try:
        write_bytes_atomic(path, save(state, metadata={"key": key}))
    except OSError as err:
        print(f"note: int8 calibration not cached ({err})", file=sys.stderr)
        return False
    return True


def quantize_tdpcr(
    model: nn.Module,
    optical: torch.Tensor,
    sar: torch.Tensor,
    store: Path,
    cache_dir: Path | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The int8 graph of a TDP-CR for inputs shaped like ``optical`` / ``sar`` (B, C, w, w).

    Returns the converted (not yet compiled) graph wrapped in :class:`Int8Forward`, and a
    description: quantized / float conv and linear counts, calibration cache state.
    """
    from tdpcr.core.checkpoint import weights_digest

    quantize_pt2e, x86 = _import_torchao()
    batch, window = optical.shape[0], optical.shape[-1]
    floats = float_module_names(model)
    quantizer = x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config()
    )
    for name in floats:
        # Names inside the wrapper of the exported module: "model." + the submodule's.
        quantizer.set_module_name_qconfig(f"model.{name}", None)
    wrapped = _AllOutputs(model).eval()
    example = (optical.float().contiguous(), sar.float().contiguous())
    graph = torch.export.export(wrapped, example).module()
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    cal_opt, cal_sar, patch_ids = calibration_windows(store, window)
    key = cache_key(weights_digest(model), window, patch_ids, floats)
    path = None if cache_dir is None else cache_dir / f"{CACHE_PREFIX}{key[:16]}.safetensors"
    expected = _observer_state(prepared)
    cached = None if path is None else read_cache(path, key, expected)
    cache = "none"
    with torch.no_grad():
        if cached is not None:
            prepared.load_state_dict(cached, strict=False)
            cache = "reused"
        else:
            for start in range(0, len(cal_opt), batch):
                chunk = [t[start : start + batch] for t in (cal_opt, cal_sar)]
                # The graph's batch is static: pad a short last chunk with its own windows.
                missing = batch - chunk[0].shape[0]
                if missing:
                    chunk = [torch.cat([t, t[:1].expand(missing, *t.shape[1:])]) for t in chunk]
                prepared(*chunk)
            if path is not None:
                cache = "written" if write_cache(path, key, _observer_state(prepared)) else "none"
        converted = quantize_pt2e.convert_pt2e(prepared)
    counts = layer_counts(converted)
    return Int8Forward(converted), {
        **counts,
        "float_modules": floats,
        "calibration_windows": CALIBRATION_WINDOWS,
        "calibration_cache": cache,
        "calibration_file": None if path is None else path.name,
    }


def layer_counts(converted: nn.Module) -> dict[str, int]:
    """Convolutions / linears of a converted graph, and how many take int8 (dequantized) input.

    A quantized layer reads its weight through a dequantize node (the pattern inductor
    replaces with an int8 kernel); a float one reads the weight directly.
    """
    ops = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    total = quantized = 0
    for node in converted.graph.nodes:  # type: ignore[union-attr]
        if node.op != "call_function" or node.target not in ops:
            continue
        total += 1
        weight = node.args[1]
        if getattr(weight, "op", "") == "call_function" and "dequantize" in str(weight.target):
            quantized += 1
    return {"layers": total, "layers_int8": quantized}


def default_store(folder: Path, config: dict[str, Any]) -> Path | None:
    """``results/tiles/<dataset>.zarr`` of a checkpoint folder ``results/models/<variant>``."""
    dataset = config.get("dataset")
    if not dataset:
        return None
    return folder.resolve().parent.parent / "tiles" / f"{dataset}.zarr"


def check_store(store: Path | None, checkpoint: str) -> Path:
    """The calibration store, or one clear error naming what is missing."""
    if store is None:
        raise TdpcrError(
            f"--precision int8 calibrates on the training tile store, and none is known for "
            f"checkpoint {checkpoint}: give --calibration-store STORE.zarr"
        )
    if not Path(store).exists():
        raise TdpcrError(
            f"--precision int8 calibrates on the training tile store: {store} not found "
            "(give --calibration-store STORE.zarr)"
        )
    return Path(store)
