"""HPN-CR: hybrid SAR-optical cloud removal (transformer U-Net for optics, ResNet for SAR).

Written for this project from the architecture description of Gu et al., HPN-CR (IEEE TGRS
2025) in ``shared/docs/baselines.md`` (section 2, read from G-pz/HPN-CR @ 431fe5bb, which has
no licence, so no code of it is used here). The optical branch is a modified DehazeFormer
(Song et al., IEEE TIP 2023): rescaled layer norm (RLN), window attention with a meta-MLP
position bias, selective-kernel (SK) fusion of the U-Net skips.

Structure (defaults = the published ``hpn_cr()`` configuration):

* optics: 3x3 stride-2 conv 13 -> 26 (1/2), level 1 (26 ch, 8 blocks), 2x2 stride-2 conv,
  level 2 (52 ch, 8 blocks, 1/4), 2x2 stride-2 conv, level 3 (104 ch, 8 blocks, 1/8);
* SAR: three conv residual blocks with BatchNorm, each followed by a 2x2 average pool,
  2 -> 64 -> 128 -> 256 channels (1/8);
* bottleneck at 1/8: concatenation (104 + 256), squeeze-excitation, conv residual block to 104;
* decoder: 1x1 conv + PixelShuffle up, SK fusion with the 1x1-conv'd skip (plus the upsampled
  input), level 4 (52 ch, 4 blocks); the same again to level 5 (26 ch, 4 blocks); a 3x3 conv +
  PixelShuffle to 32 channels at full resolution, LeakyReLU, squeeze-excitation, 3x3 conv to
  13 bands;
* output: sigmoid(that + the cloudy input): a global residual inside the sigmoid, so the
  output lies in (0, 1) like the [0, 1] reflectance targets.

Every transformer block has a spatial gate side branch, a gated-conv (gnConv of order 1) value
path and a depthwise 5x5 conv; the last ``attn_blocks[i]`` blocks of level i also have windowed
multi-head self-attention (2, 4 and 6 of 8 in levels 1 to 3, none in the decoder), with RLN
before the attention and the MLP. Where baselines.md is silent, the exact parameter count
decides: the convs before BatchNorm and the squeeze-excitation layers have no biases.

Sizes: at the defaults 3,685,931 parameters (the published 3.69 M, exact). MACs on one
256 x 256 sample with fvcore's default handles: 16.89 G (conv 15.88, attention matmuls 0.96,
BatchNorm 0.045, position-bias MLP 0.013). The upstream model measures 17.62 G: the same
except 0.74 G for the position-bias MLP, which it evaluates on every token pair where we
evaluate it once per distinct offset (:class:`WindowAttention`; same outputs). Table I of the
TDP-CR paper says 19.6 G; baselines.md finds no explanation for that gap.

Input size: H and W must be multiples of 8 (three stride-2 stages, where the SAR branch's
three poolings meet the optics) and at least 24 (the reflect-padded depthwise 5x5 conv at 1/8
needs 3 pixels); non-square works. Window attention pads its input to a multiple of the window
(8, 12, 16 at levels 1 to 3) by reflection, as upstream, applied in steps when the map is
smaller than the pad (at 64 x 64 crops level 3 is 8 x 8 against 16 x 16 windows), so the
windows, and the position-bias coordinates the meta-MLP sees, are the same at every size.

Initialisation: the published one (DehazeFormer's truncated normal with the depth gain
(8 * sum(depths)) ** -0.25 in the attention and MLP convs, N(0, 0.2) for the two skip convs and
the final conv, PyTorch defaults elsewhere). The project's identity rule (zero the last conv of
the residual branch, ``tdpcr.models.nafnet.zero_init_``) cannot give the identity here: the
residual sits inside the sigmoid, so a zero final conv gives sigmoid(input), a fixed
contrast-crushed map in (0.5, 0.73), not the cloudy image. Keeping the published sigmoid
output, the published initialisation is the closer of the two options.

Some published parameters are never used by the forward pass: the ``gate_2`` (2 -> 2) and
``gate_4`` (4 -> 4) 3x3 convs of every window attention (named in baselines.md), and a 1x1
C -> C conv in every block (``unused_v``, DehazeFormer's value conv, which the gated conv
replaced; inferred: without it the count is 128,856 short, and calling it would add 0.35 G
MACs to the 17.62 G measured upstream). They are built, so the count is the published one, but
frozen, so DistributedDataParallel does not wait for their gradients.

Shapes use B = batch, C = channels, H/W = height/width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: H and W must be multiples of this: three stride-2 stages (optics) or poolings (SAR) meet.
FACTOR = 8
#: Smallest H and W: the reflect-padded depthwise 5x5 conv at 1/8 needs 3 pixels there.
MIN_SIZE = 3 * FACTOR


def reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflection padding of any width, in steps when a pad is not smaller than the map.

    ``F.pad(mode="reflect")`` needs each pad below the padded side's length. Padding again
    by reflection of the already padded map continues the mirror image, so the result equals
    one reflection pad whenever that one is possible.

    Shapes: (B, C, H, W) -> (B, C, H + top + bottom, W + left + right).
    """
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        if min(h, w) < 2:
            raise ValueError(f"cannot reflect a {h} x {w} map")
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (
            p - s for p, s in zip((left, right, top, bottom), step, strict=True)
        )
    return x


def trunc_normal_init_(conv: nn.Conv2d, gain: float = 1.0) -> None:
    """DehazeFormer's init: truncated normal, std = gain * sqrt(2 / (fan_in + fan_out)), zero
    bias. The depth gain below 1 keeps a deep stack of residual blocks from growing at start.
    """
    fan_in = conv.weight.shape[1] * conv.weight[0, 0].numel()
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class RescaledLayerNorm(nn.Module):
    """RLN: layer norm over (C, H, W) per sample that also returns how to undo it.

    The normalised map gets an affine weight and bias per channel; the per-sample std and mean
    go through two 1x1 convs (1 -> C) that give ``rescale`` and ``rebias``. The block applies
    them to its branch output (out * rescale + rebias), so the image's contrast and brightness,
    which plain layer norm would throw away, reach the output again.

    Shapes: (B, C, H, W) -> (normed (B, C, H, W), rescale (B, C, 1, 1), rebias (B, C, 1, 1)).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.meta_scale = nn.Conv2d(1, dim, kernel_size=1)
        self.meta_shift = nn.Conv2d(1, dim, kernel_size=1)
        # Start near rescale = 1, rebias = 0: the block first passes its branch through.
        nn.init.trunc_normal_(self.meta_scale.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.ones_(self.meta_scale.bias)
        nn.init.trunc_normal_(self.meta_shift.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.meta_shift.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = ((x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps).sqrt()
        normed = (x - mean) / std * self.weight + self.bias
        return normed, self.meta_scale(std), self.meta_shift(mean)


class SpatialGate(nn.Module):
    """Spatial attention side branch: channel max and mean (2 maps) -> one conv per kernel
    size (2 -> 1) -> concatenated -> 1x1 conv -> sigmoid, multiplied into the input.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, kernel_sizes: Sequence[int] = (3, 5, 7)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(2, 1, kernel_size=k, padding=k // 2) for k in kernel_sizes
        )
        self.mix = nn.Conv2d(len(kernel_sizes), 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        mixed = self.mix(torch.cat([branch(pooled) for branch in self.branches], dim=1))
        return x * torch.sigmoid(mixed)


class GatedConv(nn.Module):
    """Gated convolution of order 1 (HorNet's gnConv with one order), HPN-CR's value path.

    1x1 conv C -> 2C, split into a and b; a times depthwise kxk conv(b); 1x1 conv C -> C. The
    product gives the value an input-dependent (second-order) spatial interaction.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, 2 * dim, kernel_size=1)
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.proj_out = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.proj_in(x).chunk(2, dim=1)
        return self.proj_out(a * self.dw(b))


def relative_offsets(window_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct relative (dy, dx) offsets of a window, and which one each token pair has.

    Returns the offsets as sign(d) * log(1 + |d|), shape ((2 ws - 1)^2, 2): the log
    compresses far offsets so the meta-MLP sees inputs of similar scale at every window size;
    and the index of each pair's offset, shape (N, N) with N = ws^2.
    """
    span = torch.arange(-(window_size - 1), window_size)
    table = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)  # (2, N)
    dy, dx = coords[:, :, None] - coords[:, None, :]  # each (N, N)
    index = (dy + window_size - 1) * (2 * window_size - 1) + (dx + window_size - 1)
    table = table.float()
    return torch.sign(table) * torch.log1p(table.abs()), index


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a meta-MLP relative position bias.

    The bias is an MLP (2 -> ``meta_hidden`` -> LeakyReLU -> heads) of the log relative
    offset of each token pair, evaluated at every forward (it has to be, to be trained).
    Upstream evaluates it on all N^2 pairs; we evaluate it once per distinct offset,
    (2 ws - 1)^2 of them, and gather: the same bias and gradients, at 1/68 of the cost for
    16 x 16 windows (0.74 G MACs less per forward at the published size, whatever the image
    size, which dominated training steps on small crops).

    Shapes: qkv (B', N, 3C) with q, k, v stacked on the last axis -> (B', N, C).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, meta_hidden: int = 256) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        offsets, index = relative_offsets(window_size)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("offset_index", index, persistent=False)
        self.meta = nn.Sequential(
            nn.Linear(2, meta_hidden), nn.LeakyReLU(), nn.Linear(meta_hidden, num_heads)
        )
        # Built by the published model but never called: kept for its parameter count and
        # frozen (no gradient would ever reach them; DDP would wait for one).
        self.gate_2 = nn.Conv2d(2, 2, kernel_size=3, padding=1).requires_grad_(False)
        self.gate_4 = nn.Conv2d(4, 4, kernel_size=3, padding=1).requires_grad_(False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, n, _ = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B', heads, N, C / heads)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.meta(self.offsets)[self.offset_index].permute(2, 0, 1)  # (heads, N, N)
        attn = torch.softmax(attn + bias.unsqueeze(0), dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, self.dim)


class Attention(nn.Module):
    """HPN-CR's token mixer: gated-conv value, depthwise 5x5 conv, optional window attention.

    V = GatedConv(x). Without attention: proj(dwconv5x5(V)). With attention, Q and K come
    from a 1x1 conv (C -> 2C) of the same (normed) input; [Q, K, V] is reflect-padded to
    whole windows (shifted blocks pad ``window_size // 2`` on the top and left instead of
    rolling the map), attended per window, cropped back, and the output is
    proj(dwconv5x5(V) + attention).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        use_attn: bool = False,
        meta_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.v = GatedConv(dim)
        # A plain 1x1 value conv (DehazeFormer's) that the published model builds but never
        # calls: the published count needs it (3,685,931 exactly), and the published MACs
        # (17.62 G) leave no room for it (+0.35 G). Frozen, like WindowAttention's gates.
        self.unused_v = nn.Conv2d(dim, dim, kernel_size=1).requires_grad_(False)
        self.conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, padding_mode="reflect")
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.qk: nn.Conv2d | None = None
        self.attn: WindowAttention | None = None
        if use_attn:
            self.qk = nn.Conv2d(dim, 2 * dim, kernel_size=1)
            self.attn = WindowAttention(dim, num_heads, window_size, meta_hidden)

    def _windowed(self, qkv: torch.Tensor) -> torch.Tensor:
        """Window attention over a whole map: (B, 3C, H, W) -> (B, C, H, W)."""
        assert self.attn is not None
        b, c3, h, w = qkv.shape
        ws, shift = self.window_size, self.shift_size
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        top, left = shift, shift
        bottom, right = (ws - shift + pad_h) % ws, (ws - shift + pad_w) % ws
        if not shift:
            bottom, right = pad_h, pad_w
        qkv = reflect_pad(qkv, left, right, top, bottom)
        hp, wp = qkv.shape[-2:]
        # (B, 3C, Hp, Wp) -> (B * windows, ws * ws, 3C)
        windows = qkv.reshape(b, c3, hp // ws, ws, wp // ws, ws)
        windows = windows.permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c3)
        out = self.attn(windows)
        c = out.shape[-1]
        out = out.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(b, c, hp, wp)
        return out[:, :, top : top + h, left : left + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v(x)
        out = self.conv(v)
        if self.qk is not None:
            out = out + self._windowed(torch.cat([self.qk(x), v], dim=1))
        return self.proj(out)


class Mlp(nn.Module):
    """1x1 conv C -> hidden -> LeakyReLU -> 1x1 conv hidden -> C.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=1),
            nn.LeakyReLU(),
            nn.Conv2d(hidden, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TransformerBlock(nn.Module):
    """One HPN-CR transformer block.

    x = x + [Attention(RLN(x)) * rescale + rebias] + gate_scale * SpatialGate(x), then
    x = x + [Mlp(RLN(x)) * rescale + rebias]. Blocks without attention have no RLN (the
    bracket is the plain branch output).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        shift_size: int = 0,
        use_attn: bool = False,
        gate_scale: float = 0.01,
        meta_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.gate_scale = gate_scale
        self.spatial_gate = SpatialGate()
        self.norm1 = RescaledLayerNorm(dim) if use_attn else None
        self.attn = Attention(dim, num_heads, window_size, shift_size, use_attn, meta_hidden)
        self.norm2 = RescaledLayerNorm(dim) if use_attn else None
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    @staticmethod
    def _branch(x: torch.Tensor, norm: RescaledLayerNorm | None, f: nn.Module) -> torch.Tensor:
        if norm is None:
            return f(x)
        normed, rescale, rebias = norm(x)
        return f(normed) * rescale + rebias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = self.spatial_gate(x)
        x = x + self._branch(x, self.norm1, self.attn) + self.gate_scale * gated
        return x + self._branch(x, self.norm2, self.mlp)


def transformer_level(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    window_size: int,
    attn_blocks: int,
    meta_hidden: int = 256,
) -> nn.Sequential:
    """``depth`` blocks; the last ``attn_blocks`` have attention, every second one shifted.

    Shapes: (B, dim, H, W) -> (B, dim, H, W).
    """
    return nn.Sequential(
        *[
            TransformerBlock(
                dim,
                num_heads,
                mlp_ratio,
                window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                use_attn=i >= depth - attn_blocks,
                meta_hidden=meta_hidden,
            )
            for i in range(depth)
        ]
    )


class ConvResidualBlock(nn.Module):
    """SAR branch and bottleneck block: (3x3 conv, BN, ReLU) x 2 plus a 1x1 conv + BN
    shortcut, optionally followed by a 2x2 average pool.

    Shapes: (B, C_in, H, W) -> (B, C_out, H / 2, W / 2) with ``pool``, else (B, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.pool: nn.Module = nn.AvgPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Channel reweighting: global average -> Linear C -> hidden -> ReLU -> Linear -> C ->
    sigmoid, multiplied in.

    The average is a module so that test-time local statistics
    (:mod:`tdpcr.models.local_stats`) can make it per pixel; the Linear layers then run on
    every pixel's C-vector.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, h, w) with h = w = 1 under global pooling; Linear acts on channels last.
        weights = self.fc(self.pool(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x * weights


class SKFusion(nn.Module):
    """Selective-kernel fusion of two maps: per-channel softmax weights over the two inputs
    from GAP(a + b) -> 1x1 conv C -> d -> ReLU -> 1x1 conv d -> 2C, d = max(C // reduction,
    min_hidden). The average is a module for test-time local statistics
    (:mod:`tdpcr.models.local_stats`), which make the weights per pixel.

    Shapes: a, b (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, reduction: int = 8, min_hidden: int = 4) -> None:
        super().__init__()
        hidden = max(dim // reduction, min_hidden)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2 * dim, kernel_size=1, bias=False),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n, c = a.shape[:2]
        logits = self.mlp(self.pool(a + b))  # (B, 2C, h, w), h = w = 1 under global pooling
        logits = logits.view(n, 2, c, logits.shape[-2], logits.shape[-1])
        weights = torch.softmax(logits, dim=1)
        return a * weights[:, 0] + b * weights[:, 1]


def patch_embed(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 stride-2 conv, reflect padding: (B, C_in, H, W) -> (B, C_out, H / 2, W / 2)."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size=3, stride=2, padding=1, padding_mode="reflect"
    )


def patch_merge(in_channels: int, out_channels: int) -> nn.Conv2d:
    """2x2 stride-2 conv: (B, C_in, H, W) -> (B, C_out, H / 2, W / 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2)


def patch_split(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """kxk conv (reflect) to 4 C_out, then PixelShuffle(2):
    (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            4 * out_channels,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode="reflect",
        ),
        nn.PixelShuffle(2),
    )


class HPNCR(nn.Module):
    """HPN-CR cloud-removal network (see the module docstring).

    ``embed_dims``, ``depths``, ``num_heads``, ``mlp_ratios``, ``window_sizes`` and
    ``attn_blocks`` have one entry per transformer level (3 encoder, 2 decoder levels; the
    decoder's widths must equal encoder levels 2 and 1). ``sar_dims``: the SAR blocks' widths.

    Shapes: optical (B, in_optical, H, W) reflectance in [0, 1], sar (B, in_sar, H, W) scaled
    to [0, 1], H and W multiples of 8, at least 24 -> dict with ``image`` (B, in_optical, H, W)
    in (0, 1).
    """

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
        embed_dims: Sequence[int] = (26, 52, 104, 52, 26),
        depths: Sequence[int] = (8, 8, 8, 4, 4),
        num_heads: Sequence[int] = (2, 4, 4, 2, 2),
        mlp_ratios: Sequence[float] = (2, 4, 4, 2, 2),
        window_sizes: Sequence[int] = (8, 12, 16, 12, 8),
        attn_blocks: Sequence[int] = (2, 4, 6, 0, 0),
        sar_dims: Sequence[int] = (64, 128, 256),
        fusion_se_hidden: int = 10,
        head_channels: int = 32,
        head_se_hidden: int = 4,
        meta_hidden: int = 256,
        sk_reduction: int = 8,
    ) -> None:
        super().__init__()
        for name, values in [
            ("embed_dims", embed_dims),
            ("depths", depths),
            ("num_heads", num_heads),
            ("mlp_ratios", mlp_ratios),
            ("window_sizes", window_sizes),
            ("attn_blocks", attn_blocks),
        ]:
            if len(values) != 5:
                raise ValueError(f"{name} needs 5 entries (one per level), got {list(values)}")
        if len(sar_dims) != 3:
            raise ValueError(f"sar_dims needs 3 entries, got {list(sar_dims)}")
        if embed_dims[3] != embed_dims[1] or embed_dims[4] != embed_dims[0]:
            raise ValueError(f"decoder widths must mirror the encoder's, got {list(embed_dims)}")
        self.in_optical = in_optical
        self.in_sar = in_sar
        #: Input sides must be multiples of this (three 2x poolings; predict's windows follow).
        self.size_divisor = 8
        d = list(embed_dims)

        def level(i: int) -> nn.Sequential:
            return transformer_level(
                d[i],
                depths[i],
                num_heads[i],
                mlp_ratios[i],
                window_sizes[i],
                attn_blocks[i],
                meta_hidden,
            )

        # Optical encoder.
        self.patch_embed = patch_embed(in_optical, d[0])
        self.level1 = level(0)
        self.merge1 = patch_merge(d[0], d[1])
        self.level2 = level(1)
        self.merge2 = patch_merge(d[1], d[2])
        self.level3 = level(2)
        # SAR encoder, full resolution down to 1/8.
        widths = [in_sar, *sar_dims]
        self.sar = nn.Sequential(*[ConvResidualBlock(widths[i], widths[i + 1]) for i in range(3)])
        # Bottleneck fusion at 1/8.
        self.fusion_se = SqueezeExcite(d[2] + sar_dims[-1], fusion_se_hidden)
        self.fusion = ConvResidualBlock(d[2] + sar_dims[-1], d[2], pool=False)
        # Decoder.
        self.split1 = patch_split(d[2], d[3])
        self.skip2 = nn.Conv2d(d[1], d[1], kernel_size=1)
        self.fuse2 = SKFusion(d[3], sk_reduction)
        self.level4 = level(3)
        self.split2 = patch_split(d[3], d[4])
        self.skip1 = nn.Conv2d(d[0], d[0], kernel_size=1)
        self.fuse1 = SKFusion(d[4], sk_reduction)
        self.level5 = level(4)
        self.unembed = patch_split(d[4], head_channels, kernel_size=3)
        self.head_act = nn.LeakyReLU()
        self.head_se = SqueezeExcite(head_channels, head_se_hidden)
        self.final = nn.Conv2d(head_channels, in_optical, kernel_size=3, padding=1)
        self._init_weights(sum(depths))

    def _init_weights(self, network_depth: int) -> None:
        # DehazeFormer's rule, in the transformer blocks only: every MLP conv, and every conv
        # of the token mixer except the C -> 2C ones (DehazeFormer's test for Q/K, which here
        # also takes the gated conv's input projection), get the truncated normal scaled by the
        # depth gain; those C -> 2C convs get it without the gain.
        gain = (8 * network_depth) ** -0.25
        for block in self.modules():
            if isinstance(block, (Attention, Mlp)):
                for m in block.modules():
                    if isinstance(m, nn.Conv2d) and m.weight.requires_grad:
                        qk_like = (
                            isinstance(block, Attention) and m.out_channels == 2 * m.in_channels
                        )
                        trunc_normal_init_(m, 1.0 if qk_like else gain)
        for conv in (self.skip1, self.skip2, self.final):
            nn.init.normal_(conv.weight, std=0.2)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = optical.shape[-2:]
        if h % FACTOR or w % FACTOR or min(h, w) < MIN_SIZE:
            raise ValueError(
                f"HPN-CR needs H and W multiples of {FACTOR}, at least {MIN_SIZE}; got {h} x {w}"
            )
        x = self.level1(self.patch_embed(optical))  # (B, d0, H/2, W/2)
        skip1 = x
        x = self.level2(self.merge1(x))  # (B, d1, H/4, W/4)
        skip2 = x
        x = self.level3(self.merge2(x))  # (B, d2, H/8, W/8)
        x = self.fusion(self.fusion_se(torch.cat([x, self.sar(sar)], dim=1)))
        x = self.split1(x)
        x = self.fuse2(x, self.skip2(skip2)) + x
        x = self.split2(self.level4(x))
        x = self.fuse1(x, self.skip1(skip1)) + x
        x = self.head_act(self.unembed(self.level5(x)))  # (B, head_channels, H, W)
        x = self.final(self.head_se(x))
        # Global residual inside the sigmoid: the network predicts a logit correction.
        return {"image": torch.sigmoid(x + optical)}
