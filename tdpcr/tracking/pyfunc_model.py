"""The MLflow "model from code" of every trained tdpcr model (logged by :mod:`.model_logging`).

MLflow copies this file into each logged model and runs it when the model is loaded
(``mlflow.pyfunc.load_model``): :class:`TdpcrPyfunc` rebuilds the network from the model's
``checkpoint`` artifact (``model.safetensors`` + ``meta.json``) with tdpcr's own loader. Nothing is
pickled: with a code file MLflow 3.17 writes no ``python_model.pkl`` (``pyfunc.model``'s
``_save_model_with_class_artifacts_params`` skips its cloudpickle dump when ``model_code_path``
is set) and loads it with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` off; weights are safetensors
and the rest is JSON.

Values follow ``tdpcr predict`` (:mod:`tdpcr.prediction.inputs`): inputs in the units of the
GeoTIFFs, outputs in the units of its COGs.

- ``optical``: float32 (B, 13, H, W), Sentinel-2 L1C DN (reflectance x 1e4, B1..B8, B8A,
  B9..B12). A pixel whose 13 bands are all 0 or any NaN is nodata.
- ``sar``: float32 (B, 2, H, W), Sentinel-1 VV, VH backscatter in dB (NaN = no data).
- ``cloudfree`` (cloud-removal models): float32 (B, 13, H, W), DN in [0, 1e4]; 0 on nodata.
  ``tdpcr predict`` writes ``rint`` of it as uint16, valid pixels clipped to >= 1.
- ``landcover`` (models with a class head): uint8 (B, H, W) class index, 255 on nodata.

Param ``s2_offset`` (default 0) is removed from ``optical`` first (1000 for processing baseline
>= 04.00). Any H, W work: inputs are mirror-padded up to the model's size divisor and the
outputs cropped back. Runs on CUDA (bf16 autocast) when a GPU is usable, else on the CPU,
exactly as ``tdpcr predict`` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from tdpcr.core.checkpoint import load_checkpoint
from tdpcr.core.runtime import autocast, select_device
from tdpcr.core.specs import S2_SCALE
from tdpcr.data.normalize import normalise_s1, normalise_s2
from tdpcr.models import create_model_from
from tdpcr.tracking.model_logging import model_inputs

#: Label written where the input is nodata (the project's ignore index, as in landcover.tif).
NODATA_CLASS = 255


def _pad(array: np.ndarray, divisor: int) -> np.ndarray:
    """Mirror-pad (B, C, H, W) up to multiples of ``divisor`` (what ``tdpcr predict`` does to
    windows past the scene edge)."""
    pad_h, pad_w = (-array.shape[-2]) % divisor, (-array.shape[-1]) % divisor
    if not pad_h and not pad_w:
        return array
    return np.pad(array, [(0, 0), (0, 0), (0, pad_h), (0, pad_w)], mode="symmetric")


def _nodata(optical: np.ndarray) -> np.ndarray:
    """(B, H, W) True where a Sentinel-2 pixel is nodata (all bands 0, or any band NaN)."""
    return (optical == 0).all(axis=1) | np.isnan(optical).any(axis=1)


# MLflow checks predict's type hints when the class is defined and, finding none, warns that
# they would "enable data validation" (its hints must be list[...] of instances, which a
# batch of tensors is not). The logged tensor signature validates the inputs instead, so the
# advice is recorded and dropped rather than printed at every load.
with warnings.catch_warnings(record=True):

    class TdpcrPyfunc(PythonModel):
        """A tdpcr checkpoint behind MLflow's ``predict``; see the module docstring for the I/O."""

        def load_context(self, context: Any) -> None:
            checkpoint = load_checkpoint(Path(context.artifacts["checkpoint"]))
            self.meta = checkpoint.meta
            self.inputs = model_inputs(self.meta)
            self.device = select_device()
            model = create_model_from(checkpoint).eval()
            self.model = model.to(device=self.device, memory_format=torch.channels_last)
            # TDP-CR needs multiples of 2 ** stages; DSen2-CR and SegFormer take any size.
            self.divisor = int(getattr(model, "size_divisor", 1))

        def _tensor(self, array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(_pad(array, self.divisor)))
            return tensor.to(self.device).contiguous(memory_format=torch.channels_last)

        # No type hints on predict: MLflow derives a signature from them and warns about a dict
        # input; the logged signature (tensors, see model_logging.signature) is the contract.
        def predict(self, context, model_input, params=None):
            """``{"optical", "sar"}`` arrays in, ``{"cloudfree", "landcover"}`` arrays out."""
            offset = float((params or {}).get("s2_offset", 0))
            arrays = {}
            invalid = None
            if "optical" in self.inputs:
                optical = np.asarray(model_input["optical"], dtype=np.float32)
                invalid = _nodata(optical)
                if offset:
                    optical = np.clip(optical - np.float32(offset), 0.0, None)
                normalised = normalise_s2(optical)
                normalised[np.broadcast_to(invalid[:, None], normalised.shape)] = 0.0
                arrays["optical"] = normalised
            if "sar" in self.inputs:
                arrays["sar"] = normalise_s1(np.asarray(model_input["sar"], dtype=np.float32))
            height, width = next(iter(arrays.values())).shape[-2:]
            tensors = [self._tensor(arrays[name]) for name in self.inputs]
            with torch.inference_mode(), autocast(self.device.type == "cuda"):
                out = self.model(*tensors)
            return self._outputs(out, height, width, invalid)

        def _outputs(
            self, out: dict[str, torch.Tensor], height: int, width: int, invalid: np.ndarray | None
        ) -> dict[str, np.ndarray]:
            result = {}
            if "image" in out:
                image = out["image"].float()[..., :height, :width].cpu().numpy()
                cloudfree = np.clip(image, 0.0, 1.0) * np.float32(S2_SCALE)
                if invalid is not None:
                    cloudfree[np.broadcast_to(invalid[:, None], cloudfree.shape)] = 0.0
                result["cloudfree"] = cloudfree.astype(np.float32)
            if "logits" in out:
                logits = out["logits"].float()[..., :height, :width]
                landcover = logits.argmax(1).to(torch.uint8).cpu().numpy()
                if invalid is not None:
                    landcover[invalid] = NODATA_CLASS
                result["landcover"] = landcover
            return result


mlflow.models.set_model(TdpcrPyfunc())
