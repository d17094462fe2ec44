"""Parameter and MAC counts of every model, at the configured size and at the paper's size.

The counting convention is the paper's: fvcore's ``FlopCountAnalysis`` with its default
op handles, on one sample of 256 x 256 pixels (13 optical + 2 SAR bands; SegFormer gets its
own 13- or 2-band input). fvcore counts one multiply-add as one "flop", i.e. it reports
MACs; convolution and linear biases are not counted; normalisation layers count as fvcore
counts them (LayerNorm and GroupNorm 5 per element, BatchNorm in eval 2 per element); ops
without a handle (elementwise arithmetic, activations, softmax, pixel shuffle,
``scaled_dot_product_attention``) count as zero. That convention reproduces Table I where
the paper's figure can be traced: DSen2-CR's 1241.2 G (no norms), GLF-CR's 249.7 G (only
with its LayerNorms counted) and EMRDM's 83.6 G. We report ``macs_G`` and
``flops_G = 2 * macs_G``.

Where fvcore misses matrix products, ``macs_G_full`` adds them: EMRDM's attention products
(its neighbourhood attention is elementwise work to fvcore, its global attention a fused
kernel) and its GEGLU up-projections, which Table I's 83.6 G leaves out
(:func:`tdpcr.models.emrdm.macs_per_evaluation`). Every other model's matrix products are
fvcore-visible (SegFormer and CloudSeg are traced with eager attention), so there
``macs_G_full = macs_G``. ``evaluations`` is the number of network evaluations per image
(EMRDM's sampler: 5; one for every other model), and ``macs_G_per_image`` is
``macs_G_full * evaluations``.

The paper's numbers are copied into ``paper_params_M`` / ``paper_flops_G`` on the paper-size
rows only, labelled as the paper reports them ("FLOPs"; they are MACs: DSen2-CR's 1241.2 G
equals fvcore's MAC count).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tdpcr.core.config import shipped_config
from tdpcr.core.io import write_csv_atomic
from tdpcr.core.paper import PAPER_COMPLEXITY
from tdpcr.models import create_model


def paper_sizes() -> dict[str, dict[str, Any]]:
    """Constructor kwargs of each model at the paper's size, from the shipped config/paper.yaml
    (SegFormer: the paper does not give its size; the config's is MiT-B0)."""
    return shipped_config("paper")["models"]


#: Rows of this report that the paper's Table I lists: (model, variant) -> its key in
#: :data:`tdpcr.core.paper.PAPER_COMPLEXITY`.
PAPER_ROWS: dict[tuple[str, str], str] = {
    ("tdpcr", "cr-only"): "tdpcr-cr",
    ("tdpcr", "full"): "tdpcr-full",
    ("dsen2cr", "cr"): "dsen2cr",
    ("glfcr", "cr"): "glf-cr",
    ("hpncr", "cr"): "hpn-cr",
    ("emrdm", "per-evaluation"): "emrdm",
    ("cloudseg", "multi-task"): "cloudseg",
}

#: CSV columns, in order.
COLUMNS: tuple[str, ...] = (
    "model",
    "variant",
    "size",
    "input_shape",
    "params",
    "params_M",
    "macs",
    "macs_G",
    "flops_G",
    "macs_G_full",
    "evaluations",
    "macs_G_per_image",
    "paper_params_M",
    "paper_flops_G",
)


class _TensorOutputs(nn.Module):
    """Tracing wrapper: the models return dicts, fvcore's JIT trace wants tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs)
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))


def count_params_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(number of parameters, fvcore MACs of one forward pass on ``inputs``).

    Runs the model once in eval mode under ``torch.no_grad``, fvcore's default handles (the
    paper's convention); fvcore's warnings about ops it cannot count and about modules it
    never saw called are silenced.
    """
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    fv_logger = logging.getLogger("fvcore")
    old_level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # fvcore's import and torch.jit.trace warn about TorchScript's deprecation and
            # about tracing; neither matters for counting.
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(_TensorOutputs(model), inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            macs = int(analysis.total())
    finally:
        fv_logger.setLevel(old_level)
    return params, macs


def _variants(
    kwargs_by_model: Mapping[str, Mapping[str, Any]], num_classes: int
) -> list[tuple[str, str, dict[str, Any], tuple[int, ...]]]:
    """(model, variant, constructor kwargs, input channels) for every row of one size."""

    def sized(name: str) -> dict[str, Any]:
        return dict(kwargs_by_model.get(name, {}))

    def channels(kwargs: Mapping[str, Any]) -> tuple[int, int]:
        return (kwargs.get("in_optical", 13), kwargs.get("in_sar", 2))

    tdp, seg, cloudseg = sized("tdpcr"), sized("segformer"), sized("cloudseg")
    full_classes = tdp.get("num_classes") or num_classes
    # "eager" attention so fvcore sees (and counts) the MiT encoders' attention matmuls.
    eager = {"attn_implementation": "eager"}
    seg = {**seg, "num_classes": seg.get("num_classes", num_classes), **eager}
    cloudseg = {**cloudseg, "num_classes": cloudseg.get("num_classes", num_classes), **eager}
    rows = [
        ("tdpcr", "cr-only", {**tdp, "num_classes": None}, channels(tdp)),
        ("tdpcr", "full", {**tdp, "num_classes": full_classes}, channels(tdp)),
    ]
    rows += [(m, "cr", sized(m), channels(sized(m))) for m in ("dsen2cr", "glfcr", "hpncr")]
    rows += [
        ("emrdm", "per-evaluation", sized("emrdm"), channels(sized("emrdm"))),
        ("cloudseg", "multi-task", cloudseg, channels(cloudseg)),
        ("segformer", "optical-13", {**seg, "in_channels": 13}, (13,)),
        ("segformer", "sar-2", {**seg, "in_channels": 2}, (2,)),
    ]
    return rows


def _count(model_name: str, model: nn.Module, channels: tuple[int, ...], size: int) -> dict:
    """Parameters and MACs of one built model: fvcore's count, the full count, per image."""
    if model_name == "emrdm":  # one network evaluation of the denoiser, and the sampler's 5
        from tdpcr.models.emrdm import macs_per_evaluation

        counted = macs_per_evaluation(model, size, size)
        evaluations = int(model.sampling_steps)
        macs, full = counted["table1"], counted["full"]
        params = sum(p.numel() for p in model.parameters())
    else:
        inputs = tuple(torch.randn(1, c, size, size) for c in channels)
        params, macs = count_params_macs(model, inputs)
        evaluations, full = 1, macs
    return {
        "params": params,
        "params_M": round(params / 1e6, 4),
        "macs": macs,
        "macs_G": round(macs / 1e9, 4),
        "flops_G": round(2 * macs / 1e9, 4),
        "macs_G_full": round(full / 1e9, 4),
        "evaluations": evaluations,
        "macs_G_per_image": round(full * evaluations / 1e9, 4),
    }


def complexity_rows(
    configured: Mapping[str, Mapping[str, Any]],
    num_classes: int = 7,
    image_size: int = 256,
    include_paper: bool = True,
) -> list[dict[str, Any]]:
    """Params and MACs of every model variant at the configured size and at the paper's size.

    ``configured`` maps model name to constructor kwargs (the config's ``models:`` section; a
    missing model uses its class defaults, the paper's size). Rows: tdpcr cr-only / full
    (``num_classes`` classes unless the config sets them), dsen2cr, glfcr, hpncr, emrdm (one
    network evaluation), cloudseg (both heads), segformer on 13 optical bands and on 2 SAR
    bands. One sample of ``image_size`` x ``image_size`` pixels. Returns one dict per row with
    keys ``COLUMNS``; paper numbers only on paper-size rows (None elsewhere).
    """
    sizes: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = [("configured", configured)]
    if include_paper:
        sizes.append(("paper", paper_sizes()))
    rows: list[dict[str, Any]] = []
    for size, kwargs_by_model in sizes:
        for model_name, variant, kwargs, channels in _variants(kwargs_by_model, num_classes):
            torch.manual_seed(0)
            model = create_model(model_name, **kwargs)
            counted = _count(model_name, model, channels, image_size)
            del model
            key = PAPER_ROWS.get((model_name, variant)) if size == "paper" else None
            paper = PAPER_COMPLEXITY.get(key) if key else None
            rows.append(
                {
                    "model": model_name,
                    "variant": variant,
                    "size": size,
                    "input_shape": "+".join(f"1x{c}x{image_size}x{image_size}" for c in channels),
                    **counted,
                    "paper_params_M": paper[0] if paper else None,
                    "paper_flops_G": paper[1] if paper else None,
                }
            )
    return rows


def write_rows_csv(rows: list[dict[str, Any]], out_path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` (keys ``COLUMNS``) to CSV atomically (temp file, then os.replace)."""
    return write_csv_atomic(out_path, rows, COLUMNS)


def write_complexity_csv(
    configured: Mapping[str, Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    num_classes: int = 7,
    image_size: int = 256,
    include_paper: bool = True,
) -> list[dict[str, Any]]:
    """Compute :func:`complexity_rows` and write them to ``out_path`` as CSV; returns the rows.

    The paper-size DSen2-CR row runs a 1.2 TMAC forward pass: about 20-30 s on 2 CPU cores.
    """
    rows = complexity_rows(configured, num_classes, image_size, include_paper)
    write_rows_csv(rows, out_path)
    return rows
