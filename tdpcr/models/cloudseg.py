"""CloudSeg: multi-task cloud removal and land-cover segmentation from optical + SAR.

Baseline of the TDP-CR paper, re-implemented for this project from the architecture facts in
``shared/docs/baselines.md`` ("4. CloudSeg": Xu, Shi, Yang, Xia, Zhu, ISPRS 2024, repository
xufangchn/CloudSeg). That repository has no licence, so no code of it (nor of the
segmentation_models_pytorch copy it vendors) is used here.

What comes from where:

* ``transformers`` provides the Mix Transformer (MiT) encoder stages: each stream is the
  ``stages`` list of a randomly initialised ``SegformerModel`` (overlapping patch embedding,
  efficient self-attention with spatial reduction, Mix-FFN with its depthwise 3x3 conv,
  stochastic depth, the per-stage LayerNorm, and the library's weight initialisation). No
  pretrained weights: the paper loads ImageNet MiT-B4, which neither fits 13 or 2 input bands
  without surgery nor can be downloaded here; the project's SegFormers also train from scratch.
* Written here: the fusion blocks (multi-scale context, spatial gate, SE-weighted sum, gated
  redistribution), the U-Net decoder (an smp-style decoder: nearest x2 upsampling, skip
  concatenation, two conv3x3-BN-ReLU), the segmentation head and the cloud-removal head.

Structure (defaults = the paper's MiT-B4 configuration with 13 optical bands):

* three MiT encoders with widths [64, 128, 320, 512], depths [3, 8, 27, 3], heads
  [1, 2, 5, 8], spatial-reduction ratios [8, 4, 2, 1], output strides 4, 8, 16, 32: an optical
  stream (13 bands), a SAR stream (2 bands) and a cross-modal stream that starts at stage 2;
* a :class:`FuseBlock` after each of the four stages. The first one creates the cross-modal
  feature from the optical and SAR ones; the later ones read and update all three streams;
* the cross-modal stream's U-Net decoder (channels 256, 128, 64, 32, 16) and a conv3x3 head
  give the land-cover logits at full resolution. The decoder's 16-channel output is also the
  feature the student distils from the teacher (``features``);
* the optical stream's U-Net decoder and a two-conv head (16 -> 64 -> 13, no activation, no
  global residual) give the cloud-free image.

The teacher is this same class run on cloud-free optical + SAR and trained with the
segmentation loss only; the student's losses are in :mod:`tdpcr.training.cloudseg_losses`.

Parameter count. The published network is three complete smp U-Nets, and some of their
modules never run: the SAR stream's decoder and segmentation head, the optical stream's
segmentation head, the cross-modal stream's stage 1 (a 3-band patch embedding, smp's default),
the first fuse block's cross-modal context conv and the last fuse block's SAR redistribution
(its output would feed only the SAR decoder). ``keep_unused=True`` (the default) builds
them, frozen (``requires_grad=False``: nothing reaches them, and DistributedDataParallel would
otherwise wait for their gradients), under ``unused`` so the count matches the paper's:
6 classes and 4 optical bands give 203,215,750 (Table I: 203.22 M); 6 classes and 13 bands
give 203,249,167 (6,608,844 of them never run). ``keep_unused=False`` drops them (same outputs).

MACs (fvcore default handles, eager attention, one 256 x 256 sample): 43.41 G at the default
size, against Table I's 105.9 G, which ``baselines.md`` could not reproduce either (42.96 G
upstream with 4 optical bands).

Shapes use B = batch, C = channels, K = classes, H/W = height/width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerModel

from tdpcr.models.inputs import check_paired_inputs

#: Input bands of the published cross-modal stream's (never run) stage 1: smp's default of 3.
UPSTREAM_CROSS_IN_CHANNELS = 3


# --------------------------------------------------------------------------- encoder


def mit_stages(
    in_channels: int,
    hidden_sizes: Sequence[int],
    depths: Sequence[int],
    num_attention_heads: Sequence[int],
    sr_ratios: Sequence[int],
    mlp_ratios: Sequence[int],
    patch_sizes: Sequence[int],
    strides: Sequence[int],
    drop_path_rate: float,
    attn_implementation: str | None,
) -> nn.ModuleList:
    """The stages of a randomly initialised transformers MiT encoder (``SegformerModel``).

    We keep the stages, not the model: the fusion blocks act between stages, so each stage is
    called on its own. Stage ``k`` maps (B, C_{k-1}, H, W) -> (B, hidden_sizes[k], H / s_k,
    W / s_k) with s_k = strides[k] (C_{-1} = ``in_channels``). Drop-path rates rise linearly
    over all blocks of the encoder, as in SegFormer.
    """
    config = SegformerConfig(
        num_channels=in_channels,
        num_encoder_blocks=len(hidden_sizes),
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        num_attention_heads=list(num_attention_heads),
        sr_ratios=list(sr_ratios),
        mlp_ratios=list(mlp_ratios),
        patch_sizes=list(patch_sizes),
        strides=list(strides),
        drop_path_rate=drop_path_rate,
    )
    backbone = SegformerModel(config)  # post_init applies the library's initialisation
    if attn_implementation is not None:
        # The attention layers read the kernel from the config they share with the model.
        backbone.set_attn_implementation(attn_implementation)
    return backbone.stages


# --------------------------------------------------------------------------- fusion


class MultiScaleContext(nn.Module):
    """Multi-scale context (MSC): the feature, its 2x and 4x max-pooled versions upsampled back
    (nearest), concatenated and mixed by a 1x1 conv with ReLU.

    ``ceil_mode`` pooling equals plain pooling when the side divides by 4 (every stage of a
    256 x 256 input); on smaller maps (the 2 x 2 last stage of a 64 x 64 input) the partial
    window is pooled instead of failing on an empty output.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3 * channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(F.max_pool2d(x, k, k, ceil_mode=True), size=size, mode="nearest")
            for k in (2, 4)
        ]
        return F.relu(self.mix(torch.cat([x, *pooled], dim=1)))


class SpatialGate(nn.Module):
    """CBAM's spatial attention map: per-pixel channel max and mean, a 7x7 conv (2 -> 1, no
    bias, BN) and a sigmoid.

    Shapes: (B, C, H, W) -> (B, 1, H, W) in (0, 1).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.norm(self.conv(pooled)))


class SEWeightedSum(nn.Module):
    """Squeeze-and-excitation over ``parts`` concatenated features, then their sum.

    GAP -> Linear(n -> n / reduction) -> ReLU -> Linear -> sigmoid (no biases), n = parts * C;
    the channel weights rescale the concatenation, which is split back into its parts and
    summed, so the SE block learns how much of each modality enters the cross-modal feature.
    The average is a module for test-time local statistics (:mod:`tdpcr.models.local_stats`),
    under which the Linear layers run on every pixel's n-vector.

    Shapes: list of ``parts`` tensors (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, parts: int, reduction: int = 16) -> None:
        super().__init__()
        n = parts * channels
        hidden = max(n // reduction, 1)
        self.parts = parts
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(n, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, n, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(list(features), dim=1)
        # (B, n, h, w) with h = w = 1 under global pooling; Linear acts on channels last.
        weights = self.fc(self.pool(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        first, *rest = (x * weights).chunk(self.parts, dim=1)
        for part in rest:
            first = first + part
        return first


class GatedRedistribution(nn.Module):
    """Hands the cross-modal feature back to one stream through a learned per-pixel gate:
    x + sigmoid(conv3x3(d)) * d with d = cross - x_msc.

    Shapes: x, x_msc, cross (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, x_msc: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        diff = cross - x_msc
        return x + torch.sigmoid(self.gate(diff)) * diff


class FuseBlock(nn.Module):
    """CloudSeg's fusion after one encoder stage.

    1. multi-scale context of each input (own MSC per stream);
    2. a spatial gate from the optical-minus-SAR difference weights the optical feature
       (where the two disagree, e.g. under clouds, the optical one is damped);
    3. SE-weighted sum of (gated optical, SAR[, cross]) = the new cross-modal feature;
    4. gated redistribution of it into the optical and SAR streams.

    ``first`` (after stage 1) has no cross-modal input yet: the SE block sees two parts and the
    block creates the cross-modal feature. ``last`` (after stage 4) returns the SAR feature
    unchanged: nothing reads the SAR stream after the last block (its published decoder never
    runs), and a redistribution nobody reads would get no gradient.

    Shapes: opt, sar[, cross] (B, C, H, W) -> (opt, sar, cross), each (B, C, H, W).
    """

    def __init__(
        self, channels: int, first: bool = False, last: bool = False, se_reduction: int = 16
    ) -> None:
        super().__init__()
        self.msc_opt = MultiScaleContext(channels)
        self.msc_sar = MultiScaleContext(channels)
        self.msc_cross = None if first else MultiScaleContext(channels)
        self.spatial_gate = SpatialGate()
        self.se_sum = SEWeightedSum(channels, 2 if first else 3, se_reduction)
        self.to_opt = GatedRedistribution(channels)
        self.to_sar = None if last else GatedRedistribution(channels)

    def forward(
        self, opt: torch.Tensor, sar: torch.Tensor, cross: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        opt_m, sar_m = self.msc_opt(opt), self.msc_sar(sar)
        parts = [self.spatial_gate(opt_m - sar_m) * opt_m, sar_m]
        if self.msc_cross is not None:
            if cross is None:
                raise ValueError("a FuseBlock after stage 2-4 needs the cross-modal feature")
            parts.append(self.msc_cross(cross))
        cross = self.se_sum(parts)
        if self.to_sar is not None:
            sar = self.to_sar(sar, sar_m, cross)
        return self.to_opt(opt, opt_m, cross), sar, cross


# --------------------------------------------------------------------------- decoder


class ConvBNReLU(nn.Sequential):
    """conv3x3 (no bias: BN follows) -> BatchNorm -> ReLU. Shapes: (B, C_in, H, W) ->
    (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNetDecoderBlock(nn.Module):
    """Nearest x2 upsampling, concatenation of the skip (if any), two ConvBNReLU.

    Shapes: x (B, C_in, H, W), skip (B, C_skip, 2H, 2W) or None -> (B, C_out, 2H, 2W).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """smp-style U-Net decoder over the four encoder stages, back to full resolution.

    Starts from the deepest stage and doubles the resolution once per decoder channel entry,
    concatenating the encoder feature of the same stride where there is one (strides 16, 8 and
    4 for MiT; none at strides 2 and 1). No centre block.

    Shapes: features, list over stages of (B, encoder_channels[k], H / s_k, W / s_k), s_k the
    cumulative stride -> (B, decoder_channels[-1], H, W).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_strides: Sequence[int],
        decoder_channels: Sequence[int],
    ) -> None:
        super().__init__()
        cumulative = [math.prod(encoder_strides[: k + 1]) for k in range(len(encoder_strides))]
        if 2 ** len(decoder_channels) != cumulative[-1]:
            raise ValueError(
                f"{len(decoder_channels)} decoder blocks upsample by 2 ** "
                f"{len(decoder_channels)}, but the encoder's total stride is {cumulative[-1]}"
            )
        #: Encoder stage whose output is each block's skip (None: no skip at that stride).
        self.skip_from: list[int | None] = []
        blocks = []
        in_channels = encoder_channels[-1]
        for i, out_channels in enumerate(decoder_channels):
            stride = cumulative[-1] // 2 ** (i + 1)
            stage = next((k for k, s in enumerate(cumulative[:-1]) if s == stride), None)
            self.skip_from.append(stage)
            skip_channels = 0 if stage is None else encoder_channels[stage]
            blocks.append(UNetDecoderBlock(in_channels, skip_channels, out_channels))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, stage in zip(self.blocks, self.skip_from, strict=True):
            x = block(x, None if stage is None else features[stage])
        return x


# --------------------------------------------------------------------------- model


class CloudSeg(nn.Module):
    """CloudSeg student (and teacher): cloud-free image and land-cover logits.

    Args:
        in_optical: optical bands in and out (the cloud-removal head predicts the same bands).
        in_sar: SAR bands.
        num_classes: land-cover classes (K).
        hidden_sizes, depths, num_attention_heads, sr_ratios, mlp_ratios, patch_sizes,
            strides: the MiT encoder configuration, one entry per stage (four stages), shared
            by the three streams. Defaults: MiT-B4.
        decoder_channels: U-Net decoder widths, one per x2 upsampling (so
            2 ** len = prod(strides)); the last one is the distilled feature's width.
        cr_hidden: width of the cloud-removal head's middle conv.
        se_reduction: channel reduction of the fusion blocks' SE layers.
        drop_path_rate: stochastic depth of the MiT encoders (SegFormer's 0.1).
        keep_unused: build (frozen) the published network's modules that never run, so the
            parameter count matches the paper's (see the module docstring).
        attn_implementation: the transformers attention kernel ("sdpa", "eager", ...; None =
            library default). fvcore only counts the matmuls of "eager".

    Shapes: optical (B, in_optical, H, W) reflectance in [0, 1], sar (B, in_sar, H, W) in
    [0, 1], H and W multiples of prod(strides) (32). ``forward`` returns a dict with

    * ``image``: (B, in_optical, H, W), the cloud-free estimate (no output activation);
    * ``logits``: (B, num_classes, H, W);
    * ``features``: (B, decoder_channels[-1], H, W), the cross-modal decoder output that the
      student matches to the teacher's on clear pixels.
    """

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
        num_classes: int = 7,
        hidden_sizes: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 8, 27, 3),
        num_attention_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: Sequence[int] = (4, 4, 4, 4),
        patch_sizes: Sequence[int] = (7, 3, 3, 3),
        strides: Sequence[int] = (4, 2, 2, 2),
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        cr_hidden: int = 64,
        se_reduction: int = 16,
        drop_path_rate: float = 0.1,
        keep_unused: bool = True,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        per_stage = [hidden_sizes, depths, num_attention_heads, sr_ratios, mlp_ratios]
        per_stage += [patch_sizes, strides]
        if len({len(v) for v in per_stage}) != 1 or len(hidden_sizes) != 4:
            raise ValueError(
                "hidden_sizes, depths, num_attention_heads, sr_ratios, mlp_ratios, patch_sizes "
                "and strides need one entry for each of the four encoder stages"
            )
        self.in_optical, self.in_sar, self.num_classes = in_optical, in_sar, num_classes
        self.size_divisor = math.prod(strides)

        def encoder(in_channels: int) -> nn.ModuleList:
            return mit_stages(
                in_channels,
                hidden_sizes,
                depths,
                num_attention_heads,
                sr_ratios,
                mlp_ratios,
                patch_sizes,
                strides,
                drop_path_rate,
                attn_implementation,
            )

        def decoder() -> UNetDecoder:
            return UNetDecoder(hidden_sizes, strides, decoder_channels)

        def seg_head() -> nn.Conv2d:
            return nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1)

        self.opt_encoder = encoder(in_optical)
        self.sar_encoder = encoder(in_sar)
        # The cross-modal stream starts at stage 2: FuseBlock 1 creates its first feature.
        cross_encoder = encoder(UPSTREAM_CROSS_IN_CHANNELS)
        self.cross_encoder = nn.ModuleList(list(cross_encoder)[1:])
        last = len(hidden_sizes) - 1
        self.fuse = nn.ModuleList(
            FuseBlock(c, first=k == 0, last=k == last, se_reduction=se_reduction)
            for k, c in enumerate(hidden_sizes)
        )
        self.seg_decoder = decoder()
        self.seg_head = seg_head()
        self.cr_decoder = decoder()
        # Two convs with nothing between them, as published (a linear map of 3x3x3x3 reach).
        self.cr_head = nn.Sequential(
            nn.Conv2d(decoder_channels[-1], cr_hidden, kernel_size=3, padding=1),
            nn.Conv2d(cr_hidden, in_optical, kernel_size=3, padding=1),
        )
        self.unused: nn.ModuleDict | None = None
        if keep_unused:
            self.unused = nn.ModuleDict(
                {
                    "cross_stage1": cross_encoder[0],
                    "fuse1_msc_cross": MultiScaleContext(hidden_sizes[0]),
                    "fuse4_to_sar": GatedRedistribution(hidden_sizes[-1]),
                    "sar_decoder": decoder(),
                    "sar_seg_head": seg_head(),
                    "opt_seg_head": seg_head(),
                }
            )
            self.unused.requires_grad_(False)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        check_paired_inputs(
            "CloudSeg", optical, sar, self.size_divisor, "the encoder's total stride"
        )
        opt, sar_x = self.opt_encoder[0](optical), self.sar_encoder[0](sar)
        opt, sar_x, cross = self.fuse[0](opt, sar_x)
        opt_feats, cross_feats = [opt], [cross]
        for k in range(1, len(self.fuse)):
            opt = self.opt_encoder[k](opt)
            sar_x = self.sar_encoder[k](sar_x)
            cross = self.cross_encoder[k - 1](cross)
            opt, sar_x, cross = self.fuse[k](opt, sar_x, cross)
            opt_feats.append(opt)
            cross_feats.append(cross)
        features = self.seg_decoder(cross_feats)
        return {
            "image": self.cr_head(self.cr_decoder(opt_feats)),
            "logits": self.seg_head(features),
            "features": features,
        }
