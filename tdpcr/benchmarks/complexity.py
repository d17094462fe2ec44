"""Parameter and MAC counts of every model, at the configured size and at the paper's size.

MACs are counted by fvcore's ``FlopCountAnalysis`` on one sample of 256 x 256 pixels (13
optical + 2 SAR bands; SegFormer gets its own 13- or 2-band input). fvcore counts one
multiply-add as one "flop", i.e. it reports MACs; convolution and linear biases are not
counted, and ops without a counter (elementwise arithmetic, activations, softmax, pixel
shuffle) count as zero. We also zero fvcore's counts for normalisation layers (see
``_IGNORED_OPS``) and keep its small counts for pooling and bilinear upsampling. We report
``macs_G`` and ``flops_G = 2 * macs_G``.

The paper's numbers are copied into ``paper_params_M`` / ``paper_flops_G`` on the paper-size
rows only, labelled as the paper reports them ("FLOPs"); for DSen2-CR the paper's 1241.2 G
equals fvcore's MAC count, so the paper's "FLOPs" column is read as MACs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
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
    "paper_params_M",
    "paper_flops_G",
)


#: Ops fvcore would count that we leave out: normalisation layers are elementwise work, and
#: counting them would make the total depend on whether a norm is written as one fused op
#: (counted) or as several elementwise ops (not counted).
_IGNORED_OPS: tuple[str, ...] = (
    "aten::layer_norm",
    "aten::group_norm",
    "aten::batch_norm",
    "aten::instance_norm",
)


def _count_nothing(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    return Counter()


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

    Runs the model once in eval mode under ``torch.no_grad``; fvcore's warnings about ops it
    cannot count and about modules it never saw called are silenced.
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
            # A handle that counts nothing (a None handle does not override fvcore's own).
            analysis.set_op_handle(**{op: _count_nothing for op in _IGNORED_OPS})
            macs = int(analysis.total())
    finally:
        fv_logger.setLevel(old_level)
    return params, macs


def _variants(
    kwargs_by_model: Mapping[str, Mapping[str, Any]], num_classes: int
) -> list[tuple[str, str, dict[str, Any], tuple[int, ...]]]:
    """(model, variant, constructor kwargs, input channels) for every row of one size."""
    tdp = dict(kwargs_by_model.get("tdpcr", {}))
    ds = dict(kwargs_by_model.get("dsen2cr", {}))
    seg = dict(kwargs_by_model.get("segformer", {}))
    tdp_in = (tdp.get("in_optical", 13), tdp.get("in_sar", 2))
    ds_in = (ds.get("in_optical", 13), ds.get("in_sar", 2))
    full_classes = tdp.get("num_classes") or num_classes
    seg_classes = seg.get("num_classes", num_classes)
    # "eager" attention so fvcore sees (and counts) SegFormer's attention matmuls.
    seg = {**seg, "num_classes": seg_classes, "attn_implementation": "eager"}
    return [
        ("tdpcr", "cr-only", {**tdp, "num_classes": None}, tdp_in),
        ("tdpcr", "full", {**tdp, "num_classes": full_classes}, tdp_in),
        ("dsen2cr", "cr", ds, ds_in),
        ("segformer", "optical-13", {**seg, "in_channels": 13}, (13,)),
        ("segformer", "sar-2", {**seg, "in_channels": 2}, (2,)),
    ]


def complexity_rows(
    configured: Mapping[str, Mapping[str, Any]],
    num_classes: int = 7,
    image_size: int = 256,
    include_paper: bool = True,
) -> list[dict[str, Any]]:
    """Params and MACs of every model variant at the configured size and at paper size.

    ``configured`` maps model name (``tdpcr``, ``dsen2cr``, ``segformer``) to constructor
    kwargs (the config's ``models:`` section; a missing model uses its class defaults).
    Variants: tdpcr cr-only / full (``num_classes`` classes unless the config sets them),
    dsen2cr, segformer on 13 optical bands and on 2 SAR bands. One sample of
    ``image_size`` x ``image_size`` pixels. Returns one dict per row with keys ``COLUMNS``;
    paper numbers only on paper-size rows (None elsewhere).
    """
    sizes: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = [("configured", configured)]
    if include_paper:
        sizes.append(("paper", paper_sizes()))
    rows: list[dict[str, Any]] = []
    for size, kwargs_by_model in sizes:
        for model_name, variant, kwargs, channels in _variants(kwargs_by_model, num_classes):
            torch.manual_seed(0)
            model = create_model(model_name, **kwargs)
            inputs = tuple(torch.randn(1, c, image_size, image_size) for c in channels)
            params, macs = count_params_macs(model, inputs)
            del model
            key = PAPER_ROWS.get((model_name, variant)) if size == "paper" else None
            paper = PAPER_COMPLEXITY.get(key) if key else None
            rows.append(
                {
                    "model": model_name,
                    "variant": variant,
                    "size": size,
                    "input_shape": "+".join(f"1x{c}x{image_size}x{image_size}" for c in channels),
                    "params": params,
                    "params_M": round(params / 1e6, 4),
                    "macs": macs,
                    "macs_G": round(macs / 1e9, 4),
                    "flops_G": round(2 * macs / 1e9, 4),
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
