"""NAFNet building blocks: LayerNorm2d, SimpleGate, NAFBlock and NAFNet's down/up samplers.

Written for this project from the description and public reference code of NAFNet
(Chen et al., "Simple Baselines for Image Restoration", ECCV 2022;
megvii-research/NAFNet, ``basicsr/models/archs/NAFNet_arch.py`` and
``basicsr/models/archs/arch_util.py``). NAFNet is not a pip package, so the blocks are
re-implemented here; the layer layout, widths and initialisation follow that file exactly
(parameter count of one block: 7c^2 + 33c).

Shapes use B = batch, C = channels, H/W = height/width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an image tensor, per pixel.

    NAFNet normalises each pixel's C-vector (not the whole C x H x W map). Its reference
    uses a hand-written autograd function to save memory; we get the same forward and
    gradients from the fused ``F.layer_norm`` kernel on a channels-last view (no copy in,
    the output keeps channels-last strides), which measured as fast as or faster than
    spelled-out mean/var ops on CPU and saves only mean and rstd for backward.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalized_shape from the weight, not the input: the same (C,), and a constant for
        # tracing exporters (torch.onnx's TorchScript path fails on a shape read from x).
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """NAFNet's activation: split channels in two halves and multiply them.

    Shapes: (B, 2C, H, W) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block (NAFNet), shape preserving.

    Spatial mixing half: LayerNorm2d -> 1x1 (c -> 2c) -> depthwise 3x3 -> SimpleGate (2c -> c)
    -> simplified channel attention (GAP + 1x1, multiplied in) -> 1x1 (c -> c), added back
    scaled by ``beta``. Channel mixing half: LayerNorm2d -> 1x1 (c -> 2c) -> SimpleGate ->
    1x1 (c -> c), added back scaled by ``gamma``. ``beta`` and ``gamma`` start at zero so a
    freshly built block is the identity, which is what lets deep NAFNets train without tricks.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        dw_expand: int = 2,
        ffn_expand: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = channels
        dw_c = c * dw_expand
        ffn_c = c * ffn_expand
        self.conv1 = nn.Conv2d(c, dw_c, kernel_size=1)
        self.conv2 = nn.Conv2d(dw_c, dw_c, kernel_size=3, padding=1, groups=dw_c)
        self.conv3 = nn.Conv2d(dw_c // 2, c, kernel_size=1)
        # Simplified channel attention: one global average and one 1x1 conv, no nonlinearity.
        self.sca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dw_c // 2, dw_c // 2, kernel_size=1),
        )
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn_c, kernel_size=1)
        self.conv5 = nn.Conv2d(ffn_c // 2, c, kernel_size=1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.dropout2: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.norm1(inp)
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.sg(x)
        x = x * self.sca(x)
        x = self.conv3(x)
        x = self.dropout1(x)
        y = inp + x * self.beta

        x = self.conv4(self.norm2(y))
        x = self.sg(x)
        x = self.conv5(x)
        x = self.dropout2(x)
        return y + x * self.gamma


def naf_stage(channels: int, num_blocks: int, dropout: float = 0.0) -> nn.Sequential:
    """``num_blocks`` NAFBlocks in a row (an empty Sequential, the identity, for 0).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """
    return nn.Sequential(*[NAFBlock(channels, dropout=dropout) for _ in range(num_blocks)])


def naf_downsample(channels: int) -> nn.Conv2d:
    """NAFNet's downsampler: a 2x2 stride-2 conv that doubles the width.

    Shapes: (B, C, H, W) -> (B, 2C, H/2, W/2).
    """
    return nn.Conv2d(channels, 2 * channels, kernel_size=2, stride=2)


def icnr_(conv: nn.Conv2d, scale: int = 2) -> nn.Conv2d:
    """ICNR initialisation of a conv that feeds ``PixelShuffle(scale)`` (in place; returns it).

    Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution: A note on sub-pixel
    convolution, resize convolution and convolution resize" (arXiv 1707.02937): one kernel per
    output channel is drawn with the conv's default initialisation and copied to all
    ``scale ** 2`` sub-pixel positions, so the freshly built upsampler is a nearest-neighbour
    resize followed by a conv. With independent kernels per position (PyTorch's default) the
    four sub-pixels of every output pixel start as four different linear maps, a 2-pixel
    checkerboard that training (and, in phase 2, frozen weights under shifted features) does
    not remove. Same weights tensor, so no parameter-count change.
    """
    out_channels = conv.out_channels
    if out_channels % scale**2:
        raise ValueError(f"{out_channels} output channels do not split into {scale**2} phases")
    sub = torch.empty(out_channels // scale**2, *conv.weight.shape[1:])
    nn.init.kaiming_uniform_(sub, a=5**0.5)  # nn.Conv2d's default, same fan-in as the full conv
    with torch.no_grad():
        # PixelShuffle reads channel c * scale^2 + k as sub-pixel k of output channel c.
        conv.weight.copy_(sub.repeat_interleave(scale**2, dim=0))
    return conv


def naf_upsample(channels: int) -> nn.Sequential:
    """NAFNet's upsampler: 1x1 conv (no bias) to 2C, then PixelShuffle(2), halving the width.

    The conv is ICNR-initialised (:func:`icnr_`, ours; NAFNet uses the default init), which
    removes the 2- and 4-pixel grid the default init leaves in TDP-CR's outputs.

    Shapes: (B, C, H, W) -> (B, C/2, 2H, 2W).
    """
    return nn.Sequential(
        icnr_(nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False)),
        nn.PixelShuffle(2),
    )


def zero_init_(conv: nn.Conv2d) -> nn.Conv2d:
    """Zero a convolution's weights and bias in place (returns it).

    The project's one initialisation rule for residual reconstruction models (TDP-CR,
    DSen2-CR): the last conv of the residual branch starts at zero, so an untrained model
    outputs its cloudy input exactly, the identity, like NAFNet's zero-initialised block
    scales; gradients still reach that conv (its input is not zero), so it leaves zero at
    the first step.
    """
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
