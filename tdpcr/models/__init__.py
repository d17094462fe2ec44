"""Models of tdpcr: TDP-CR, and the DSen2-CR, GLF-CR, HPN-CR, EMRDM, CloudSeg and SegFormer
baselines (EMRDM, CloudSeg and SegFormer through :func:`create_model`).

No I/O here: the subpackage knows nothing about files, datasets, tracking or the CLI.
"""

from tdpcr.models.dsen2cr import DSen2CR
from tdpcr.models.glfcr import GLFCR
from tdpcr.models.hpncr import HPNCR
from tdpcr.models.nafnet import LayerNorm2d, NAFBlock, SimpleGate
from tdpcr.models.peft import (
    STRATEGIES,
    attach_segmentation_head,
    count_parameters,
    parameter_groups,
    set_trainable,
    trainable_parameters,
)
from tdpcr.models.registry import create_model, create_model_from, list_models
from tdpcr.models.tdpcr import TDPCR, PromptGenerator, PromptGuidedFusion, SegmentationHead

__all__ = [
    "STRATEGIES",
    "GLFCR",
    "TDPCR",
    "DSen2CR",
    "HPNCR",
    "LayerNorm2d",
    "NAFBlock",
    "PromptGenerator",
    "PromptGuidedFusion",
    "SegmentationHead",
    "SimpleGate",
    "attach_segmentation_head",
    "count_parameters",
    "create_model",
    "create_model_from",
    "list_models",
    "parameter_groups",
    "set_trainable",
    "trainable_parameters",
]
