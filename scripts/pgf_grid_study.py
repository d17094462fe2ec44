"""What drives PGF's modality weights, and how gridded the outputs are, on trained checkpoints.

For each TDP-CR method of the PGF measure (tdpcr.evaluation.methods.PGF_METHODS) and each PGF
stage, on up to ``--patches`` test patches:

* ``gap``: mean SAR weight inside minus outside the cloud mask (tdpcr.evaluation.pgf);
* ``saturated``: share of (pixel, channel) weights above 0.99 (a saturated softmax passes no
  gradient to the logits, so the prompt could not move it);
* ``global_logit``: mean over patches of |channel mean of the global branch's SAR - optical
  logit| (one value per patch: the branch cannot vary in space);
* ``local_spread``: mean over patches of the spatial standard deviation of the channel mean of
  the local branch's SAR - optical logit (how much the prompt moves the weights within a
  patch);
* ``local_mask_r``: Pearson correlation, over the pixels of all patches, of that local logit
  with the corrupted share of each stage pixel (does the prompt point at the clouds?);

and the grid ratio and peak contrast of the outputs (tdpcr.evaluation.spectrum). Writes one
JSON and prints it.

Usage (after ``snakemake --cores 8 all``)::

    python scripts/pgf_grid_study.py --config results/config.yaml \\
        --store results/tiles/synthetic.zarr --models results/models \\
        --out results/studies/pgf_grid_study.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tdpcr.core.config import load_config
from tdpcr.core.io import write_json_atomic
from tdpcr.core.specs import CORRUPTED_VALUES, pgf_stage_key
from tdpcr.data.dataset import make_loader
from tdpcr.evaluation.methods import PGF_METHODS, get_method
from tdpcr.evaluation.pgf import PGFMeter
from tdpcr.evaluation.protocols import load_variant_model
from tdpcr.evaluation.spectrum import SpectrumMeter


def _branch_logits(pgf: torch.nn.Module, inputs: tuple) -> tuple[Any, Any]:
    """Channel means of the global and local SAR - optical logits of one PGF call."""
    f_opt, f_sar, prompt = (*inputs, None)[:3]
    b, c, h, w = f_opt.shape
    glob = loc = None
    if pgf.global_branch is not None:
        g = pgf.global_branch(f_opt + f_sar).view(b, 2, c)
        glob = (g[:, 1] - g[:, 0]).mean(dim=1)  # (B,)
    if pgf.local_branch is not None and prompt is not None:
        p = F.interpolate(prompt, size=(h, w), mode="bilinear", align_corners=False)
        lo = pgf.local_branch(p).view(b, 2, c, h, w)
        loc = (lo[:, 1] - lo[:, 0]).mean(dim=1)  # (B, h, w)
    return glob, loc


def study_method(model: torch.nn.Module, loader, limit: int) -> dict[str, Any]:
    """The numbers of the module docstring for one loaded TDP-CR model."""
    captured: list[tuple] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: captured.append((mod, args)))
        for m in model.pgf
    ]
    meter, spectrum = PGFMeter(), SpectrumMeter()
    stages = len(model.pgf)
    saturated = [[0.0, 0.0] for _ in range(stages)]
    glob = [[] for _ in range(stages)]
    spread = [[] for _ in range(stages)]
    pairs: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(stages)]
    seen = 0
    with torch.inference_mode():
        for batch in loader:
            if seen >= limit:
                break
            captured.clear()
            out = model(batch["s2_cloudy"], batch["s1"], return_weights=True)
            mask = batch["cloudmask"]
            meter.update(out["weights"], mask)
            spectrum.update(out["image"], batch["s2_clear"])
            bad = sum((mask == v).float() for v in CORRUPTED_VALUES)
            for stage, ((module, args), alpha) in enumerate(
                zip(captured, out["weights"], strict=True)
            ):
                saturated[stage][0] += float((alpha.amax(dim=1) > 0.99).sum())
                saturated[stage][1] += alpha[:, 0].numel()
                g, lo = _branch_logits(module, args)
                if g is not None:
                    glob[stage] += g.abs().tolist()
                if lo is not None:
                    spread[stage] += lo.flatten(1).std(dim=1).tolist()
                    share = F.adaptive_avg_pool2d(bad[:, None], lo.shape[-2:])[:, 0]
                    pairs[stage].append((lo.flatten().numpy(), share.flatten().numpy()))
            seen += len(batch["patch_id"])
    for hook in hooks:
        hook.remove()
    per_patch = meter.per_patch()
    grid = spectrum.compute()
    result: dict[str, Any] = {
        "patches": seen,
        "grid_ratio": grid["ratio"],
        "grid_peak_contrast": grid["peak_contrast"],
    }
    for stage in range(stages):
        key = f"s{stage + 1}"
        r = float("nan")
        if pairs[stage]:
            x = np.concatenate([p[0] for p in pairs[stage]])
            y = np.concatenate([p[1] for p in pairs[stage]])
            if x.std() > 0 and y.std() > 0:
                r = float(np.corrcoef(x, y)[0, 1])
        gaps = np.asarray(per_patch[pgf_stage_key("gap", stage + 1)], dtype=float)
        result[key] = {
            "gap": float(np.nanmean(gaps)) if np.isfinite(gaps).any() else float("nan"),
            "saturated": saturated[stage][0] / max(saturated[stage][1], 1.0),
            "global_logit": float(np.mean(glob[stage])) if glob[stage] else None,
            "local_spread": float(np.mean(spread[stage])) if spread[stage] else None,
            "local_mask_r": r,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--models", default="results/models")
    parser.add_argument("--out", required=True)
    parser.add_argument("--patches", type=int, default=64, help="test patches per method")
    args = parser.parse_args()
    config = load_config(Path(args.config))
    results = {}
    for name in PGF_METHODS:
        variant = get_method(name).cr_variant
        model, _ = load_variant_model(Path(args.models), variant, config, "cpu")
        pieces = ["s2_cloudy", "s2_clear", "s1", "cloudmask"]
        loader = make_loader(
            Path(args.store), "test", batch_size=4, train=False, workers=0, pieces=pieces
        )
        results[name] = study_method(model, loader, args.patches)
    write_json_atomic(Path(args.out), results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
