"""GLF-CR: SAR-enhanced cloud removal with global-local fusion (baseline).

Re-implemented in PyTorch after Xu et al., "GLF-CR: SAR-enhanced cloud removal with global-local
fusion" (ISPRS J. 2022), from the architecture facts in the project notes
(shared/docs/baselines.md, section "1. GLF-CR"); the public repository has no licence, so no
code is taken from it. Two streams (optical, SAR) of the same structure, fused after every
dense block, all at half resolution:

* space-to-depth x2 (pixel unshuffle) per stream, then a 5x5 and a 3x3 conv to ``features``
  (G0); the first optical conv's output is kept for a global residual;
* ``num_blocks`` (D) dual residual dense blocks of ``num_layers`` (C) layers with growth G.
  Each layer: 3x3 conv + ReLU per stream, a cross-modal (Swin-style) window attention whose
  optical logits are corrected by the SAR logits through a gate, LayerNorm + MLP; shifted
  windows on odd layers; stochastic depth rising linearly over all D x C layers. Local feature
  fusion (3x3 conv) plus the block input;
* after each block, SAR-guided fusion: a dynamic filter generator predicts a 5x5 kernel per
  pixel and SAR channel, the SAR features are filtered with them, then a gated exchange;
* global feature fusion (1x1 + 3x3 conv over the D optical outputs) plus the global residual,
  3x3 conv, PixelShuffle(2), 3x3 conv to the optical bands, added to the cloudy input.

Unlike the upstream class, nothing depends on the image size at construction: the shifted-window
masks are built for the size of each input (cached per size). H and W must be multiples of
2 x ``window_size`` (16 at the defaults). Defaults are the published configuration: 14,827,373
parameters and 249.7 G MACs (fvcore's default handles, LayerNorm counted) on one 256 x 256
sample, both as in the paper's Table I.

Where the notes leave a choice (ours, the Swin conventions GLF-CR builds on): logits scaled by
head_dim^-0.5; stochastic depth on both residual branches of a layer (attention and MLP),
drawn independently per stream; the bias table drawn from a truncated normal (std 0.02). The
last fusion's SAR gate, which feeds nothing, is kept for the published count but frozen.

Shapes use B = batch, H/W = height/width of the image, h/w = H/2, W/2 (the working resolution),
N = window_size^2 tokens per window, nW = windows per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tdpcr.models.nafnet import zero_init_

#: Logit added between tokens of different regions in a shifted window (the Swin convention:
#: large enough to vanish in the softmax, small enough to stay finite in half precision).
MASK_VALUE = -100.0


# --------------------------------------------------------------------------- functions


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Cut a channels-last map into non-overlapping windows of tokens.

    Shapes: (B, h, w, C) -> (B * nW, window^2, C), windows in row-major order.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Shapes: (B * nW, window^2, C) -> (B, h, w, C).
    """
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """Row of the relative-position-bias table for every pair of tokens in a window.

    Shapes: () -> (window^2, window^2), integers in [0, (2 * window - 1)^2).
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), offsets >= 0
    return rel[0] * (2 * window - 1) + rel[1]


def shifted_window_mask(
    h: int, w: int, window: int, shift: int, device: torch.device | None = None
) -> torch.Tensor:
    """Swin's attention mask for a map rolled by ``-shift``: pairs of tokens that come from
    different regions of the unrolled map (wrapped around by the roll) get ``MASK_VALUE``.

    Region labels come from arithmetic on coordinates (no in-place slice writes), so the same
    code runs under tracing (fvcore) and on any device.

    Shapes: () -> (nW, window^2, window^2) float, nW = (h / window) * (w / window).
    """
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    # 0, 1, 2 for the three bands Swin slices: [0, -window), [-window, -shift), [-shift, end).
    row_region = (rows >= h - window).long() + (rows >= h - shift).long()
    col_region = (cols >= w - window).long() + (cols >= w - shift).long()
    label = row_region[:, None] * 3 + col_region[None, :]  # (h, w)
    label = window_partition(label[None, :, :, None], window).squeeze(-1)  # (nW, N)
    different = label[:, :, None] != label[:, None, :]
    return different.float() * MASK_VALUE


def kernel_filter2d(x: torch.Tensor, kernels: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-pixel, per-channel (depthwise) filtering with predicted kernels, replicate padded.

    out[b, c, y, x] = sum over (dy, dx) of xpad[b, c, y + dy, x + dx] * kernels[b, c * k^2 +
    k * dy + dx, y, x]: the CUDA "KernelConv2D" op of GLF-CR. Written as k^2 shifted
    multiply-adds over one padded copy, so autograd keeps only views of that copy and of the
    kernels; an unfold would materialise a k^2-fold copy of ``x`` (157 MB per sample at the
    paper size).

    Shapes: x (B, C, h, w), kernels (B, C * k^2, h, w) -> (B, C, h, w).
    """
    b, c, h, w = x.shape
    k = kernel_size
    # unbind, not kernels[:, :, tap]: the backward of one unbind stacks the k^2 gradients
    # once, where k^2 separate selects would each scatter into a zeroed full-size tensor.
    taps = kernels.view(b, c, k * k, h, w).unbind(dim=2)
    xp = F.pad(x, (k // 2,) * 4, mode="replicate")
    out = xp[:, :, :h, :w] * taps[0]
    for tap in range(1, k * k):
        dy, dx = divmod(tap, k)
        out = torch.addcmul(out, xp[:, :, dy : dy + h, dx : dx + w], taps[tap])
    return out


# --------------------------------------------------------------------------- modules


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples
    and rescale the rest by 1 / (1 - p); the identity in eval mode or for p = 0.

    Shapes: (B, ...) -> (B, ...).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class CrossModalWindowAttention(nn.Module):
    """Multi-head self-attention inside windows, for the optical and SAR tokens together.

    Each modality has its own qkv and output projections; both logit maps get the same
    relative position bias. The SAR logits guide the optical ones:
    A_opt <- A_opt + sigmoid(conv1x1(A_sar - A_opt)) * (A_sar - A_opt), the 1x1 conv mixing
    heads. The SAR stream attends with its own logits.

    Shapes: opt, sar (B * nW, N, dim), mask (nW, N, N) or None -> two (B * nW, N, dim).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv_opt = nn.Linear(dim, 3 * dim)
        self.qkv_sar = nn.Linear(dim, 3 * dim)
        self.proj_opt = nn.Linear(dim, dim)
        self.proj_sar = nn.Linear(dim, dim)
        # A raw Parameter has no PyTorch default init: truncated normal, std 0.02, the Swin /
        # SwinIR convention (baselines.md does not state GLF-CR's).
        self.bias_table = nn.Parameter(torch.empty((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        # Derived from window_size, so not saved with the weights.
        self.register_buffer("bias_index", relative_position_index(window_size), persistent=False)
        self.logit_gate = nn.Conv2d(num_heads, num_heads, kernel_size=1)

    def _split_heads(self, qkv: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B_, N, dim) -> q, k, v, each (B_, heads, N, dim / heads)."""
        b, n, c = x.shape
        q, k, v = qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _mix_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``logit_gate`` (1x1 conv over heads) as one batched matmul: the same result and
        parameters, and fvcore counts the same MACs, but 3-10x faster on CPU than a conv with
        so few channels over (B_, heads, N, N) maps.

        Shapes: (B_, heads, N, N) -> (B_, heads, N, N).
        """
        b, h, n, _ = x.shape
        weight = self.logit_gate.weight.view(h, h).expand(b, h, h)  # expanded, not copied
        out = torch.matmul(weight, x.reshape(b, h, n * n)) + self.logit_gate.bias[:, None]
        return out.view(b, h, n, n)

    def forward(
        self, opt: torch.Tensor, sar: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = opt.shape
        q_o, k_o, v_o = self._split_heads(self.qkv_opt, opt)
        q_s, k_s, v_s = self._split_heads(self.qkv_sar, sar)
        bias = self.bias_table[self.bias_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        logits_o = (q_o * self.scale) @ k_o.transpose(-2, -1) + bias  # (B_, heads, N, N)
        logits_s = (q_s * self.scale) @ k_s.transpose(-2, -1) + bias
        diff = logits_s - logits_o
        logits_o = logits_o + torch.sigmoid(self._mix_heads(diff)) * diff
        if mask is not None:
            # The same -100 on both maps: it cancels in diff, so adding it after the fusion
            # is the same as adding it before.
            nw = mask.shape[0]
            mask = mask.to(logits_o.dtype)[None, :, None]  # (1, nW, 1, N, N)
            shape = (b // nw, nw, self.num_heads, n, n)
            logits_o = (logits_o.view(shape) + mask).view(b, self.num_heads, n, n)
            logits_s = (logits_s.view(shape) + mask).view(b, self.num_heads, n, n)
        out_o = (logits_o.softmax(dim=-1) @ v_o).transpose(1, 2).reshape(b, n, c)
        out_s = (logits_s.softmax(dim=-1) @ v_s).transpose(1, 2).reshape(b, n, c)
        return self.proj_opt(out_o), self.proj_sar(out_s)


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    """Token MLP: Linear -> GELU -> Linear. Shapes: (..., dim) -> (..., dim)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class CrossModalDenseLayer(nn.Module):
    """One layer of a dual residual dense block, both streams.

    Per stream: 3x3 conv (in -> growth) + ReLU; then, on the windows of both streams,
    :class:`CrossModalWindowAttention` added to the conv output (no pre-norm, as published),
    then LayerNorm -> MLP added; finally the new ``growth`` channels are concatenated to the
    layer input (dense connection). Windows are shifted by ``shift`` (0: unshifted).

    Shapes: opt, sar (B, in, h, w), mask (nW, N, N) (used only when shifted) ->
    two (B, in + growth, h, w).
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        window_size: int,
        num_heads: int,
        mlp_ratio: float,
        shift: int,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.conv_opt = nn.Conv2d(in_channels, growth, kernel_size=3, padding=1)
        self.conv_sar = nn.Conv2d(in_channels, growth, kernel_size=3, padding=1)
        self.attn = CrossModalWindowAttention(growth, window_size, num_heads)
        hidden = int(growth * mlp_ratio)
        self.norm_opt = nn.LayerNorm(growth)
        self.norm_sar = nn.LayerNorm(growth)
        self.mlp_opt = _mlp(growth, hidden)
        self.mlp_sar = _mlp(growth, hidden)
        self.drop_path = DropPath(drop_path)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) -> (B * nW, N, C), rolled first when shifted."""
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        return window_partition(x, self.window_size)

    def _unwindows(self, windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B * nW, N, C) -> (B, h, w, C), rolled back when shifted."""
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x

    def forward(
        self, opt: torch.Tensor, sar: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = opt.shape[-2:]
        # Channels-last tokens for attention, LayerNorm and the MLP.
        o = F.relu(self.conv_opt(opt)).permute(0, 2, 3, 1)
        s = F.relu(self.conv_sar(sar)).permute(0, 2, 3, 1)
        a_o, a_s = self.attn(self._windows(o), self._windows(s), mask if self.shift else None)
        o = o + self.drop_path(self._unwindows(a_o, h, w))
        s = s + self.drop_path(self._unwindows(a_s, h, w))
        o = o + self.drop_path(self.mlp_opt(self.norm_opt(o)))
        s = s + self.drop_path(self.mlp_sar(self.norm_sar(s)))
        return (
            torch.cat([opt, o.permute(0, 3, 1, 2)], dim=1),
            torch.cat([sar, s.permute(0, 3, 1, 2)], dim=1),
        )


class DualResidualDenseBlock(nn.Module):
    """Residual dense block over both streams: ``num_layers`` :class:`CrossModalDenseLayer`
    (odd ones shifted by window_size / 2), then per stream a 3x3 local feature fusion conv
    (features + num_layers * growth -> features) added to the block input.

    Shapes: opt, sar (B, features, h, w), mask (nW, N, N) -> two (B, features, h, w).
    """

    def __init__(
        self,
        features: int,
        num_layers: int,
        growth: int,
        window_size: int,
        num_heads: int,
        mlp_ratio: float,
        drop_paths: list[float],
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CrossModalDenseLayer(
                features + i * growth,
                growth,
                window_size,
                num_heads,
                mlp_ratio,
                shift=window_size // 2 if i % 2 else 0,
                drop_path=drop_paths[i],
            )
            for i in range(num_layers)
        )
        total = features + num_layers * growth
        self.fuse_opt = nn.Conv2d(total, features, kernel_size=3, padding=1)
        self.fuse_sar = nn.Conv2d(total, features, kernel_size=3, padding=1)

    def forward(
        self, opt: torch.Tensor, sar: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        o, s = opt, sar
        for layer in self.layers:
            o, s = layer(o, s, mask)
        return opt + self.fuse_opt(o), sar + self.fuse_sar(s)


class _LeakyResidualBlock(nn.Module):
    """conv3x3 -> LeakyReLU(0.1) -> conv3x3, added to the input. Shapes: (B, C, h, w) kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DynamicFilterGenerator(nn.Module):
    """Predicts a k x k kernel per pixel and per SAR channel from both streams.

    3x3 conv (2 features -> features) + LeakyReLU(0.1), two residual blocks, 1x1 conv
    (features -> features * k^2) + LeakyReLU(0.1). Channel c * k^2 + k * dy + dx holds tap
    (dy, dx) of channel c, the layout :func:`kernel_filter2d` reads.

    Shapes: (B, 2 * features, h, w) -> (B, features * k^2, h, w).
    """

    def __init__(self, features: int, filter_size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(2 * features, features, kernel_size=3, padding=1),
            nn.LeakyReLU(0.1),
            _LeakyResidualBlock(features),
            _LeakyResidualBlock(features),
            nn.Conv2d(features, features * filter_size**2, kernel_size=1),
            nn.LeakyReLU(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DynamicFilterFusion(nn.Module):
    """SAR-guided fusion after each dense block (the "local" fusion of GLF-CR).

    The SAR features are filtered with kernels the :class:`DynamicFilterGenerator` predicts
    from both streams (SAR_m); then two gated exchanges, each gate a 1x1 conv + sigmoid of
    the difference: opt' = opt + g1(SAR_m - opt) * (SAR_m - opt), then
    sar' = sar + g2(opt' - SAR_m) * (opt' - SAR_m).

    Shapes: opt, sar (B, features, h, w) -> two (B, features, h, w).
    """

    def __init__(self, features: int, filter_size: int) -> None:
        super().__init__()
        self.filter_size = filter_size
        self.generator = DynamicFilterGenerator(features, filter_size)
        self.gate_opt = nn.Conv2d(features, features, kernel_size=1)
        self.gate_sar = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, opt: torch.Tensor, sar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kernels = self.generator(torch.cat([opt, sar], dim=1))
        sar_m = kernel_filter2d(sar, kernels, self.filter_size)
        diff = sar_m - opt
        opt = opt + torch.sigmoid(self.gate_opt(diff)) * diff
        diff = opt - sar_m
        sar = sar + torch.sigmoid(self.gate_sar(diff)) * diff
        return opt, sar


class GLFCR(nn.Module):
    """GLF-CR cloud-removal network (see the module docstring).

    ``features`` = G0, ``num_blocks`` = D, ``num_layers`` = C, ``growth`` = G; the defaults
    are the published sizes. ``upsample_features`` is the width after PixelShuffle(2).

    Shapes: optical (B, in_optical, H, W) reflectance in [0, 1], sar (B, in_sar, H, W) scaled
    to [0, 1] -> dict with ``image`` (B, in_optical, H, W). H and W must be multiples of
    2 * window_size (16 at the defaults): space-to-depth halves them, then windows tile them.
    """

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
        features: int = 96,
        num_blocks: int = 6,
        num_layers: int = 5,
        growth: int = 48,
        window_size: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        filter_size: int = 5,
        upsample_features: int = 64,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"GLF-CR needs at least one dense block, got {num_blocks}")
        self.in_optical = in_optical
        self.in_sar = in_sar
        self.window_size = window_size
        #: Input sides must be multiples of this: half resolution, then whole windows.
        self.size_divisor = 2 * window_size
        # Shallow features on the space-to-depth (x2) inputs: 4x the channels at half size.
        self.shallow_opt1 = nn.Conv2d(4 * in_optical, features, kernel_size=5, padding=2)
        self.shallow_opt2 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.shallow_sar1 = nn.Conv2d(4 * in_sar, features, kernel_size=5, padding=2)
        self.shallow_sar2 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        # Stochastic depth rises linearly from 0 to drop_path_rate over all D x C layers
        # (plain Python: torch.linspace(...).tolist() fails on the meta device).
        n = num_blocks * num_layers
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.blocks = nn.ModuleList(
            DualResidualDenseBlock(
                features,
                num_layers,
                growth,
                window_size,
                num_heads,
                mlp_ratio,
                rates[i * num_layers : (i + 1) * num_layers],
            )
            for i in range(num_blocks)
        )
        self.fusions = nn.ModuleList(
            DynamicFilterFusion(features, filter_size) for _ in range(num_blocks)
        )
        # The last fusion's SAR output feeds nothing, so its gate can never learn. It is kept
        # (the published model has it: 14,827,373 parameters at the defaults) but frozen, so
        # that DistributedDataParallel, which waits for a gradient of every trainable
        # parameter, and optimisers see only parameters that can get one.
        self.fusions[-1].gate_sar.requires_grad_(False)
        self.global_fusion = nn.Sequential(
            nn.Conv2d(num_blocks * features, features, kernel_size=1),
            nn.Conv2d(features, features, kernel_size=3, padding=1),
        )
        self.upsample = nn.Sequential(
            nn.Conv2d(features, 4 * upsample_features, kernel_size=3, padding=1),
            nn.PixelShuffle(2),
        )
        self.tail = nn.Conv2d(upsample_features, in_optical, kernel_size=3, padding=1)
        # Every other layer keeps PyTorch's default init (baselines.md states none for
        # GLF-CR). The tail starts at zero, the project's rule for residual reconstruction
        # models (tdpcr.models.nafnet.zero_init_): the untrained model returns its cloudy
        # input exactly.
        zero_init_(self.tail)
        # Shifted-window masks by (h, w, device); derived data, so not a buffer.
        self._masks: dict[tuple[int, int, str], torch.Tensor] = {}

    def _shift_mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """The mask of the shifted layers for an h x w working map (built once per size)."""
        key = (h, w, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(
                h, w, self.window_size, self.window_size // 2, device
            )
        return self._masks[key]

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = optical.shape[-2:]
        multiple = 2 * self.window_size
        if height % multiple or width % multiple:
            raise ValueError(
                f"GLF-CR needs H and W divisible by {multiple} (2 x window), got {height}x{width}"
            )
        f1 = self.shallow_opt1(F.pixel_unshuffle(optical, 2))
        opt = self.shallow_opt2(f1)
        sar_f = self.shallow_sar2(self.shallow_sar1(F.pixel_unshuffle(sar, 2)))
        mask = self._shift_mask(height // 2, width // 2, optical.device)
        outputs = []
        for block, fusion in zip(self.blocks, self.fusions, strict=True):
            opt, sar_f = fusion(*block(opt, sar_f, mask))
            outputs.append(opt)
        # Only the optical outputs are fused: the last SAR output is unused, as published.
        x = self.global_fusion(torch.cat(outputs, dim=1)) + f1
        x = self.tail(self.upsample(x))
        # Global residual: the network predicts a correction to the cloudy image.
        return {"image": optical + x}
