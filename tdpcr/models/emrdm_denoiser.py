"""EMRDM's denoiser network F: an hourglass diffusion transformer (HDiT-style).

Written for this project from the description of EMRDM's denoiser in the project notes
(``shared/docs/baselines.md``, section "3. EMRDM"), which follows the hourglass diffusion
transformer of Crowson et al., "Scalable High-Resolution Pixel-Space Image Synthesis with
Hourglass Diffusion Transformers" (ICML 2024). No upstream code is copied (EMRDM is AGPL-3.0).

Layout (defaults = EMRDM's SEN12MS-CR configuration, 39,133,515 parameters):

* patch_in: a per-pixel linear map 28 -> 128 (1 x 1 patches; ``patch_size`` makes them
  larger), tokens kept channels-last;
* time conditioning: Fourier features of c_noise (fixed random frequencies), a linear map and a
  mapping network (RMSNorm, 2 GEGLU feed-forward blocks, RMSNorm) give one vector per sample;
* four levels at widths [128, 256, 384, 768], 2 transformer layers per level on the way down,
  2 on the way up and 2 in the middle (the coarsest level); 7 x 7 neighbourhood attention at
  the two finest levels, global attention at the two coarser ones;
* every layer: AdaRMSNorm -> cosine-similarity attention with axial RoPE -> zero-initialised
  out projection (residual), AdaRMSNorm -> GEGLU feed-forward -> zero-initialised down
  projection (residual);
* 2 x 2 token merges down, token splits up with a learnable lerp towards the skip;
* RMSNorm and a zero-initialised per-pixel linear map 128 -> 13 at the end.

Shapes use B = batch, H/W = height/width, C = channels; tokens are channels-last (B, H, W, C),
attention heads (B, heads, H, W, d_head).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


def zero_init_linear_(linear: nn.Linear) -> nn.Linear:
    """Zero a linear layer in place (returns it): HDiT zero-initialises every layer that ends a
    residual branch, so each freshly built block is the identity."""
    nn.init.zeros_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """``x`` divided by its root mean square over the last axis, times ``scale``.

    Computed in float32 at least (the mean of squares underflows in half precision).

    Shapes: x (..., C), scale broadcastable to x -> like x.
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    mean_sq = x.to(dtype).pow(2).mean(dim=-1, keepdim=True)
    return (x.to(dtype) * (scale.to(dtype) * torch.rsqrt(mean_sq + eps))).to(x.dtype)


class RMSNorm(nn.Module):
    """RMS normalisation with a learnable per-channel scale (no bias, no mean subtraction).

    Shapes: (..., C) -> (..., C).
    """

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.scale, self.eps)


class AdaRMSNorm(nn.Module):
    """RMS normalisation whose scale is 1 + a linear function of the conditioning vector.

    The linear map starts at zero, so a fresh norm is a plain RMS norm.

    Shapes: x (B, H, W, C), cond (B, cond_features) -> (B, H, W, C).
    """

    def __init__(self, features: int, cond_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.linear = zero_init_linear_(nn.Linear(cond_features, features, bias=False))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.linear(cond)[:, None, None, :] + 1, self.eps)


class LinearGEGLU(nn.Linear):
    """GEGLU: one linear map to twice the width, then ``a * gelu(b)`` of its two halves.

    Its own class so that MAC counts can tell its up-projection apart (EMRDM's published
    "FLOPs" leave it out, see :func:`tdpcr.models.emrdm.macs_per_evaluation`).

    Shapes: (..., in_features) -> (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, 2 * out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = super().forward(x).chunk(2, dim=-1)
        return a * F.gelu(b)


class FourierFeatures(nn.Module):
    """cos/sin of random projections of a scalar input (the diffusion time c_noise).

    The frequencies are a fixed N(0, std^2) draw, a persistent buffer (saved with the
    weights, not trained).

    Shapes: (B, in_features) -> (B, out_features).
    """

    def __init__(self, in_features: int, out_features: int, std: float = 1.0) -> None:
        super().__init__()
        if out_features % 2:
            raise ValueError(f"Fourier features need an even width, got {out_features}")
        self.register_buffer("weight", torch.randn(out_features // 2, in_features) * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x @ self.weight.T
        return torch.cat([f.cos(), f.sin()], dim=-1)


class MappingFeedForwardBlock(nn.Module):
    """Pre-norm GEGLU feed-forward block of the mapping network, residual.

    Shapes: (B, C) -> (B, C).
    """

    def __init__(self, features: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = RMSNorm(features)
        self.up_proj = LinearGEGLU(features, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.down_proj = zero_init_linear_(nn.Linear(d_ff, features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down_proj(self.dropout(self.up_proj(self.norm(x))))


class MappingNetwork(nn.Module):
    """RMSNorm, ``depth`` GEGLU feed-forward blocks, RMSNorm: the conditioning vector.

    Shapes: (B, C) -> (B, C).
    """

    def __init__(self, depth: int, features: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_norm = RMSNorm(features)
        self.blocks = nn.Sequential(
            *[MappingFeedForwardBlock(features, d_ff, dropout) for _ in range(depth)]
        )
        self.out_norm = RMSNorm(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_norm(self.blocks(self.in_norm(x)))


def axial_positions(
    height: int, width: int, spacing: float, device: torch.device | None = None
) -> torch.Tensor:
    """Token-centre coordinates, centred on the map, ``spacing`` apart.

    Shapes: -> (height, width, 2), [..., 0] the row coordinate, [..., 1] the column.
    """
    rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2) * spacing
    cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2) * spacing
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)


class AxialRoPE(nn.Module):
    """Axial rotary position angles for the first half of each head's dimensions.

    Of the d_head/2 rotated dimensions (d_head/4 planes), half the planes turn with the row
    coordinate and half with the column. Frequencies are log-spaced between pi and 10 pi (per
    unit of coordinate) and dealt out across heads, so different heads see different scales.

    Shapes: pos (H, W, 2) -> angles (heads, H, W, d_head / 4).
    """

    def __init__(self, d_head: int, n_heads: int) -> None:
        super().__init__()
        if d_head % 8:
            raise ValueError(f"axial RoPE needs d_head divisible by 8, got {d_head}")
        per_axis = d_head // 8
        log_freqs = torch.linspace(
            math.log(math.pi), math.log(10 * math.pi), n_heads * per_axis + 1
        )
        freqs = log_freqs[:-1].exp().view(per_axis, n_heads).T.contiguous()
        # Derived from the constructor arguments: not saved with the weights.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        theta_h = pos[..., None, 0:1] * self.freqs  # (H, W, heads, per_axis)
        theta_w = pos[..., None, 1:2] * self.freqs
        return torch.cat([theta_h, theta_w], dim=-1).movedim(-2, 0)


def apply_rope(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2r dims of ``x`` in r planes (dims i and i + r) by the angles ``theta``.

    Shapes: x (..., d_head), theta (..., r) broadcastable to x[..., :r] -> like x.
    """
    r = theta.shape[-1]
    x1, x2, rest = x[..., :r], x[..., r : 2 * r], x[..., 2 * r :]
    cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


def window_starts(length: int, kernel: int, device: torch.device | None = None) -> torch.Tensor:
    """First key index of each query's window along one axis, NATTEN's clamped windows.

    Centred on the query where it fits, shifted inward at the borders, so every query sees
    exactly ``kernel`` keys (requires kernel <= length).

    Shapes: -> (length,) int64.
    """
    i = torch.arange(length, device=device)
    return (i - kernel // 2).clamp(0, length - kernel)


def _tile_plan(
    length: int, kernel: int, tile: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Key halo and window mask of each tile of queries along one axis.

    Queries are cut into tiles of ``tile`` (the last one padded past ``length``). Every
    window of a tile's queries lies within ``halo = min(tile + kernel - 1, length)`` keys
    starting at clamp(tile start - kernel // 2, 0, length - halo); the mask marks, per query,
    the ``kernel`` keys of its own clamped window within that halo.

    Shapes: -> halo key indices (tiles, halo) int64, mask (tiles, tile, halo) bool.
    """
    n_tiles = -(-length // tile)
    halo = min(tile + kernel - 1, length)
    tile_start = torch.arange(n_tiles, device=device) * tile
    halo_start = (tile_start - kernel // 2).clamp(0, length - halo)
    halo_index = halo_start[:, None] + torch.arange(halo, device=device)
    query = tile_start[:, None] + torch.arange(tile, device=device)  # (tiles, tile)
    first = (query - kernel // 2).clamp(0, length - kernel) - halo_start[:, None]
    key = torch.arange(halo, device=device)
    mask = (key >= first[..., None]) & (key < first[..., None] + kernel)
    return halo_index, mask


def neighbourhood_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int, tile: int = 8
) -> torch.Tensor:
    """2-D neighbourhood attention with clamped kernel_size x kernel_size windows, softmax
    scale 1 (cosine attention scales q and k beforehand), no relative-position bias.

    NATTEN's semantics (:func:`window_starts`): every query attends to exactly the
    kernel_size^2 keys of its window; a map narrower than the kernel uses its whole extent
    along that axis. Pure PyTorch: queries are cut into tile x tile blocks, each block attends
    to the (tile + kernel_size - 1)^2 halo of keys that holds all its windows, and a mask
    keeps each query's own window. That is 4x the useful products at tile 8, but all of them
    in one batched ``F.scaled_dot_product_attention`` (a memory-efficient kernel on GPU, one
    opaque op to fvcore, like NATTEN upstream), about 4x faster on CPU than gathering the
    kernel_size^2 shifted keys one offset at a time; it holds about 3 copies of K and V
    instead of kernel_size^2 (a full unfold takes 1.6 GB per sample for K alone at 256^2 x
    128).

    Shapes: q, k, v (B, heads, H, W, d) -> (B, heads, H, W, d).
    """
    b, heads, height, width, d = q.shape
    row_index, row_mask = _tile_plan(height, min(kernel_size, height), tile, q.device)
    col_index, col_mask = _tile_plan(width, min(kernel_size, width), tile, q.device)
    n_rows, row_halo = row_index.shape
    n_cols, col_halo = col_index.shape

    def tiles(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # (B, heads, n_rows * size[0], n_cols * size[1], d) -> (B, heads, tiles, pixels, d)
        x = x.view(b, heads, n_rows, size[0], n_cols, size[1], d).transpose(3, 4)
        return x.reshape(b, heads, n_rows * n_cols, size[0] * size[1], d)

    def halos(x: torch.Tensor) -> torch.Tensor:
        x = x.index_select(2, row_index.flatten()).index_select(3, col_index.flatten())
        return tiles(x, (row_halo, col_halo))

    q = F.pad(q, (0, 0, 0, n_cols * tile - width, 0, n_rows * tile - height))
    mask = row_mask[:, None, :, None, :, None] & col_mask[None, :, None, :, None, :]
    mask = mask.reshape(n_rows * n_cols, tile * tile, row_halo * col_halo)
    out = F.scaled_dot_product_attention(
        tiles(q, (tile, tile)), halos(k), halos(v), attn_mask=mask, scale=1.0
    )
    out = out.view(b, heads, n_rows, n_cols, tile, tile, d).transpose(3, 4)
    return out.reshape(b, heads, n_rows * tile, n_cols * tile, d)[:, :, :height, :width]


def neighbourhood_attention_macs(q_shape: Sequence[int], kernel_size: int) -> int:
    """Multiply-adds of :func:`neighbourhood_attention` for queries of shape ``q_shape``:
    q.k and weights.v over each query's window (softmax and gathers not counted)."""
    *lead, height, width, d = q_shape
    window = min(kernel_size, height) * min(kernel_size, width)
    return 2 * math.prod(lead) * height * width * window * d


def global_attention_macs(q_shape: Sequence[int]) -> int:
    """Multiply-adds of global attention over all H*W tokens (QK^T and PV)."""
    *lead, height, width, d = q_shape
    tokens = height * width
    return 2 * math.prod(lead) * tokens * tokens * d


class SelfAttentionBlock(nn.Module):
    """Pre-norm cosine-similarity self-attention with axial RoPE, residual.

    q and k are L2-normalised per head and multiplied by the square root of a learnable
    per-head scale (initialised at 10), so the logits are scale * cos(q, k); the softmax scale
    is then 1. RoPE turns the first half of each head's dims. ``kernel_size`` None attends to
    all tokens (``F.scaled_dot_product_attention``), an odd int to the clamped
    kernel_size x kernel_size neighbourhood.

    Shapes: x (B, H, W, C), pos (H, W, 2), cond (B, cond_features) -> (B, H, W, C).
    """

    def __init__(
        self,
        features: int,
        d_head: int,
        cond_features: int,
        kernel_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if features % d_head:
            raise ValueError(f"width {features} is not a multiple of d_head {d_head}")
        if kernel_size is not None and kernel_size % 2 == 0:
            raise ValueError(f"neighbourhood kernel size must be odd, got {kernel_size}")
        self.d_head = d_head
        self.n_heads = features // d_head
        self.kernel_size = kernel_size
        self.norm = AdaRMSNorm(features, cond_features)
        self.qkv_proj = nn.Linear(features, 3 * features, bias=False)
        self.scale = nn.Parameter(torch.full((self.n_heads,), 10.0))
        self.pos_emb = AxialRoPE(d_head, self.n_heads)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = zero_init_linear_(nn.Linear(features, features, bias=False))

    def attention_macs(self, batch: int, height: int, width: int) -> int:
        """Multiply-adds of the attention products (QK^T and PV) on a (batch, height, width)
        token map: what counters of linear layers miss."""
        q_shape = (batch, self.n_heads, height, width, self.d_head)
        if self.kernel_size is None:
            return global_attention_macs(q_shape)
        return neighbourhood_attention_macs(q_shape, self.kernel_size)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        skip = x
        x = self.norm(x, cond)
        q, k, v = self.qkv_proj(x).unflatten(-1, (3, self.n_heads, self.d_head)).unbind(-3)
        q, k, v = (t.movedim(-2, 1) for t in (q, k, v))  # (B, heads, H, W, d)
        sqrt_scale = self.scale.sqrt()[:, None, None, None]
        q = q * (sqrt_scale * torch.rsqrt(q.pow(2).sum(-1, keepdim=True) + 1e-6))
        k = k * (sqrt_scale * torch.rsqrt(k.pow(2).sum(-1, keepdim=True) + 1e-6))
        theta = self.pos_emb(pos)  # (heads, H, W, d_head / 4)
        # The float32 scale promotes q and k under autocast; attention wants one dtype.
        q, k = apply_rope(q, theta).to(v.dtype), apply_rope(k, theta).to(v.dtype)
        if self.kernel_size is None:
            out = F.scaled_dot_product_attention(
                q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3), scale=1.0
            ).unflatten(2, q.shape[2:4])
        else:
            out = neighbourhood_attention(q, k, v, self.kernel_size)
        x = self.out_proj(self.dropout(out.movedim(1, -2).flatten(-2)))
        return x + skip


class FeedForwardBlock(nn.Module):
    """Pre-norm GEGLU feed-forward block (AdaRMSNorm), residual.

    Shapes: x (B, H, W, C), cond (B, cond_features) -> (B, H, W, C).
    """

    def __init__(self, features: int, d_ff: int, cond_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = AdaRMSNorm(features, cond_features)
        self.up_proj = LinearGEGLU(features, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.down_proj = zero_init_linear_(nn.Linear(d_ff, features, bias=False))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x + self.down_proj(self.dropout(self.up_proj(self.norm(x, cond))))


class TransformerLayer(nn.Module):
    """One attention block and one feed-forward block.

    Shapes: x (B, H, W, C), pos (H, W, 2), cond (B, cond_features) -> (B, H, W, C).
    """

    def __init__(
        self,
        features: int,
        d_ff: int,
        d_head: int,
        cond_features: int,
        kernel_size: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attn = SelfAttentionBlock(features, d_head, cond_features, kernel_size, dropout)
        self.ff = FeedForwardBlock(features, d_ff, cond_features, dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.ff(self.attn(x, pos, cond), cond)


class Level(nn.ModuleList):
    """A run of transformer layers at one resolution.

    Shapes: x (B, H, W, C), pos (H, W, 2), cond (B, cond_features) -> (B, H, W, C).
    """

    def forward(self, x: torch.Tensor, pos: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, pos, cond)
        return x


class TokenMerge(nn.Module):
    """Merge each patch x patch block of tokens into one (pixel-unshuffle, then a linear map).

    Shapes: (B, H, W, C_in) -> (B, H/patch, W/patch, C_out).
    """

    def __init__(self, in_features: int, out_features: int, patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_features * patch * patch, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        p = self.patch
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(2, 3).reshape(b, h // p, w // p, -1)
        return self.proj(x)


class TokenUnmerge(nn.Module):
    """Split each token into a patch x patch block (a linear map, then pixel-shuffle).

    Shapes: (B, H, W, C_in) -> (B, patch H, patch W, C_out).
    """

    def __init__(self, in_features: int, out_features: int, patch: int = 2) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_features, out_features * patch * patch, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        p = self.patch
        x = self.proj(x).reshape(b, h, w, p, p, -1)
        return x.transpose(2, 3).reshape(b, h * p, w * p, -1)


class TokenSplit(TokenUnmerge):
    """:class:`TokenUnmerge`, then a move towards the skip connection: lerp(skip, x, fac)
    with a learnable fac starting at 0.5.

    Shapes: x (B, H, W, C_in), skip (B, 2H, 2W, C_out) -> (B, 2H, 2W, C_out).
    """

    def __init__(self, in_features: int, out_features: int, patch: int = 2) -> None:
        super().__init__(in_features, out_features, patch)
        self.fac = nn.Parameter(torch.full((), 0.5))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = super().forward(x)
        return torch.lerp(skip, x, self.fac.to(x.dtype))


class HourglassDenoiser(nn.Module):
    """The hourglass transformer F(x, c_noise) of EMRDM (defaults: the published config).

    ``kernel_sizes[i]`` is the neighbourhood size of level i (None: global attention). The
    last level is the middle one (``depths[-1]`` layers); every other level has ``depths[i]``
    layers on the way down and as many on the way up. Tokens of the finest level are
    ``patch_size`` x ``patch_size`` pixels (1 published, HDiT's own image models use 4).
    Positions for RoPE are token centres ``2 patch_size / rope_reference_size`` apart at the
    finest level (doubling per level): at the published 256^2 training size these are HDiT's
    [-1, 1] coordinates, and a crop of any other size keeps the same per-pixel spacing (so
    crops train the positions that full images use at inference).

    Shapes: x (B, in_channels, H, W), c_noise (B,) -> (B, out_channels, H, W); H and W must be
    multiples of :attr:`downsampling_factor` (patch_size * 2^(levels - 1)).
    """

    def __init__(
        self,
        in_channels: int = 28,
        out_channels: int = 13,
        widths: Sequence[int] = (128, 256, 384, 768),
        depths: Sequence[int] = (2, 2, 2, 2),
        d_ffs: Sequence[int] = (256, 512, 768, 1536),
        kernel_sizes: Sequence[int | None] = (7, 7, None, None),
        dropouts: Sequence[float] = (0.0, 0.0, 0.0, 0.1),
        d_head: int = 64,
        mapping_width: int = 768,
        mapping_d_ff: int = 1536,
        mapping_depth: int = 2,
        mapping_dropout: float = 0.1,
        rope_reference_size: int = 256,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        specs = list(zip(widths, depths, d_ffs, kernel_sizes, dropouts, strict=True))
        if len(specs) < 1:
            raise ValueError("the hourglass needs at least one level")
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.downsampling_factor = patch_size * 2 ** (len(specs) - 1)
        self.rope_reference_size = rope_reference_size

        self.patch_in = TokenMerge(in_channels, widths[0], patch_size)
        self.time_emb = FourierFeatures(1, mapping_width)
        self.time_in_proj = nn.Linear(mapping_width, mapping_width, bias=False)
        self.mapping = MappingNetwork(mapping_depth, mapping_width, mapping_d_ff, mapping_dropout)

        def level(spec: tuple[int, int, int, int | None, float]) -> Level:
            width, depth, d_ff, kernel, dropout = spec
            return Level(
                [
                    TransformerLayer(width, d_ff, d_head, mapping_width, kernel, dropout)
                    for _ in range(depth)
                ]
            )

        self.down_levels = nn.ModuleList([level(spec) for spec in specs[:-1]])
        self.mid_level = level(specs[-1])
        self.up_levels = nn.ModuleList([level(spec) for spec in specs[:-1]])
        self.merges = nn.ModuleList([TokenMerge(a, b) for a, b in pairwise(widths)])
        self.splits = nn.ModuleList([TokenSplit(b, a) for a, b in pairwise(widths)])
        self.out_norm = RMSNorm(widths[0])
        self.patch_out = TokenUnmerge(widths[0], out_channels, patch_size)
        zero_init_linear_(self.patch_out.proj)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.downsampling_factor or width % self.downsampling_factor:
            raise ValueError(
                f"input {height}x{width} is not a multiple of {self.downsampling_factor}"
            )
        cond = self.mapping(self.time_in_proj(self.time_emb(c_noise[:, None].to(x.dtype))))
        x = self.patch_in(x.movedim(1, -1))
        spacing = 2.0 * self.patch_size / self.rope_reference_size
        skips = []
        for down_level, merge in zip(self.down_levels, self.merges, strict=True):
            pos = axial_positions(x.shape[1], x.shape[2], spacing, x.device)
            x = down_level(x, pos, cond)
            skips.append(x)
            x = merge(x)
            spacing *= 2
        x = self.mid_level(x, axial_positions(x.shape[1], x.shape[2], spacing, x.device), cond)
        for up_level, split, skip in reversed(
            list(zip(self.up_levels, self.splits, skips, strict=True))
        ):
            spacing /= 2
            x = split(x, skip)
            x = up_level(x, axial_positions(x.shape[1], x.shape[2], spacing, x.device), cond)
        return self.patch_out(self.out_norm(x)).movedim(-1, 1)
