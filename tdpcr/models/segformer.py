"""SegFormer segmenter for multispectral or SAR input, built from ``transformers``.

Uses ``SegformerConfig`` + ``SegformerForSemanticSegmentation`` with random initialisation (no
downloads, no pretrained weights: ImageNet weights do not fit 13- or 2-channel input anyway).
Defaults are MiT-B0 (hidden sizes [32, 64, 160, 256], depths [2, 2, 2, 2], decoder width 256,
about 3.7 M parameters); every size is a constructor argument.

Shapes use B = batch, K = classes, H/W = height/width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerForSemanticSegmentation


class SegFormer(nn.Module):
    """SegFormer (MiT encoder + all-MLP decoder) returning full-resolution logits.

    The transformers model predicts at 1/4 resolution; we upsample bilinearly to the input size,
    as the SegFormer paper does at test time.

    ``attn_implementation`` picks the transformers attention kernel ("sdpa", "eager", ...;
    None = library default). fvcore only counts the matmuls of "eager".

    Shapes: x (B, in_channels, H, W) -> dict with ``logits`` (B, num_classes, H, W). H and W
    should be multiples of 32 (the encoder's total stride).
    """

    def __init__(
        self,
        in_channels: int = 13,
        num_classes: int = 7,
        hidden_sizes: tuple[int, ...] | list[int] = (32, 64, 160, 256),
        depths: tuple[int, ...] | list[int] = (2, 2, 2, 2),
        num_attention_heads: tuple[int, ...] | list[int] = (1, 2, 5, 8),
        sr_ratios: tuple[int, ...] | list[int] = (8, 4, 2, 1),
        mlp_ratios: tuple[int, ...] | list[int] = (4, 4, 4, 4),
        patch_sizes: tuple[int, ...] | list[int] = (7, 3, 3, 3),
        strides: tuple[int, ...] | list[int] = (4, 2, 2, 2),
        decoder_hidden_size: int = 256,
        drop_path_rate: float = 0.1,
        classifier_dropout: float = 0.1,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        lists = [
            hidden_sizes,
            depths,
            num_attention_heads,
            sr_ratios,
            mlp_ratios,
            patch_sizes,
            strides,
        ]
        if len({len(v) for v in lists}) != 1:
            raise ValueError(
                "hidden_sizes, depths, num_attention_heads, sr_ratios, mlp_ratios, patch_sizes "
                "and strides need one entry per encoder stage"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        config = SegformerConfig(
            num_channels=in_channels,
            num_labels=num_classes,
            num_encoder_blocks=len(hidden_sizes),
            hidden_sizes=list(hidden_sizes),
            depths=list(depths),
            num_attention_heads=list(num_attention_heads),
            sr_ratios=list(sr_ratios),
            mlp_ratios=list(mlp_ratios),
            patch_sizes=list(patch_sizes),
            strides=list(strides),
            decoder_hidden_size=decoder_hidden_size,
            drop_path_rate=drop_path_rate,
            classifier_dropout_prob=classifier_dropout,
        )
        self.net = SegformerForSemanticSegmentation(config)
        if attn_implementation is not None:
            self.net.set_attn_implementation(attn_implementation)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values=x).logits  # (B, K, H/4, W/4)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits}
