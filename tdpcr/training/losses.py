"""Training losses: the project's L1 + lambda_ssim * (1 - SSIM) for reconstruction and CE for
segmentation, and the published losses of the reconstruction baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from tdpcr.core.specs import IGNORE_INDEX


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, lambda_ssim: float = 0.1
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + lambda_ssim * (1 - SSIM) on (B, 13, H, W) reflectance in [0, 1].

    SSIM comes from pytorch-msssim (11x11 Gaussian window, sigma 1.5, data range 1) and is
    computed in float32 even under bf16 autocast, where its variance terms would underflow.
    """
    pred32, target32 = pred.float(), target.float()
    l1 = F.l1_loss(pred32, target32)
    similarity = ssim(pred32.clamp(0, 1), target32, data_range=1.0, size_average=True)
    loss = l1 + lambda_ssim * (1.0 - similarity)
    return loss, {"l1": float(l1.detach()), "ssim": float(similarity.detach())}


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy with label smoothing; label 255 is ignored.

    The mean over labelled pixels, as ``F.cross_entropy`` computes it, except that a batch
    with no labelled pixel (patches without land cover exist in real stores) gives 0, not
    the 0 / 0 = NaN of a plain mean, so it teaches nothing instead of stopping training.
    """
    summed = F.cross_entropy(
        logits.float(),
        labels,
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    loss = summed / (labels != IGNORE_INDEX).sum().clamp(min=1)
    return loss, {"ce": float(loss.detach())}


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean absolute error on (B, 13, H, W) reflectance, in float32: GLF-CR's published loss."""
    loss = F.l1_loss(pred.float(), target.float())
    return loss, {"l1": float(loss.detach())}


#: MS-SSIM's scale weights (Wang, Simoncelli, Bovik 2003), finest scale first, as in
#: pytorch-msssim.
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian, shape (size,)."""
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, valid (no padding): (B, C, H, W) ->
    (B, C, H - k + 1, W - k + 1)."""
    c = x.shape[1]
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ms_ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    win_size: int = 11,
    win_sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale SSIM, data range 1, averaged over batch and channels; a scalar.

    pytorch-msssim's definition (11-px Gaussian window, sigma 1.5, valid filtering, 2x2
    average pooling between scales, K = (0.01, 0.03); the product over scales of the
    contrast-structure term, SSIM at the coarsest, each to the power of its scale's weight)
    with one change for small images: pytorch-msssim refuses images not larger
    than (win_size - 1) * 16 = 160 px, the size its 5 scales need. We use as many scales as
    the image allows, the largest L <= 5 with min(H, W) > (win_size - 1) * 2 ** (L - 1)
    (3 scales at 64 x 64 training crops, 4 from 81 px, 5 from 161 px), and scale the first
    L published weights to the published total, so from 161 px on this is pytorch-msssim's
    ``ms_ssim(pred, target, data_range=1)`` (checked by tests/test_model_hpncr.py). The
    per-scale terms are floored at 1e-8 where pytorch-msssim uses ReLU: x ** w has an
    infinite slope at 0, and the value differs only for terms below 1e-8.

    Shapes: pred, target (B, C, H, W) -> ().
    """
    side = min(pred.shape[-2:])
    levels = max(
        (n for n in range(1, len(weights) + 1) if side > (win_size - 1) * 2 ** (n - 1)),
        default=0,
    )
    if levels == 0:
        raise ValueError(f"MS-SSIM needs images larger than {win_size - 1} px, got {side}")
    w = torch.tensor(weights[:levels], dtype=torch.float32, device=pred.device)
    if levels < len(weights):
        w = w * (sum(weights) / w.sum())
    window = _gaussian_window(win_size, win_sigma, pred.device)
    c1, c2 = 0.01**2, 0.03**2
    terms = []
    x, y = pred, target
    for level in range(levels):
        mu_x, mu_y = _blur(x, window), _blur(y, window)
        var_x = _blur(x * x, window) - mu_x.pow(2)
        var_y = _blur(y * y, window) - mu_y.pow(2)
        cov = _blur(x * y, window) - mu_x * mu_y
        cs_map = (2 * cov + c2) / (var_x + var_y + c2)
        if level < levels - 1:
            terms.append(cs_map.flatten(2).mean(-1))  # (B, C)
            padding = [s % 2 for s in x.shape[-2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
        else:
            luminance = (2 * mu_x * mu_y + c1) / (mu_x.pow(2) + mu_y.pow(2) + c1)
            terms.append((luminance * cs_map).flatten(2).mean(-1))
    stacked = torch.stack(terms).clamp(min=1e-8)  # (levels, B, C)
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean()


def band_sam_degrees(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """HPN-CR's "SAM": the angle, in degrees, between each predicted band image and its
    target band image, each flattened to an H*W vector, averaged over batch and bands.

    Not the per-pixel spectral angle of the SAM metric: HPN-CR's loss reshapes to (B*C, H*W).
    The angle is 2 atan2(|u - v|, |u + v|) of the unit vectors u, v (Kahan's form): exactly 0
    for identical images and with finite gradients there, where acos of the cosine has an
    infinite slope. An all-zero band image counts as 90 degrees from anything nonzero.

    Shapes: pred, target (B, C, H, W) -> ().
    """
    u = F.normalize(pred.flatten(2), dim=-1, eps=1e-12)
    v = F.normalize(target.flatten(2), dim=-1, eps=1e-12)
    angle = 2 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))
    return torch.rad2deg(angle).mean()


def hpncr_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    w_smooth_l1: float = 0.2,
    w_ms_ssim: float = 0.8,
    w_sam: float = 0.005,
) -> tuple[torch.Tensor, dict[str, float]]:
    """HPN-CR's published loss: 0.2 SmoothL1 + 0.8 (1 - MS-SSIM) + 0.005 SAM.

    SmoothL1 with PyTorch's default beta 1; MS-SSIM as :func:`ms_ssim` (data range 1, all
    bands; fewer scales below 161 px); SAM is HPN-CR's band-image angle in degrees,
    :func:`band_sam_degrees`. In float32 even under bf16 autocast (SSIM variances underflow
    in bf16). pred and target are (B, C, H, W) reflectance in [0, 1] (HPN-CR's output is a
    sigmoid); pred is not clamped, as upstream.
    """
    pred32, target32 = pred.float(), target.float()
    smooth_l1 = F.smooth_l1_loss(pred32, target32)
    similarity = ms_ssim(pred32, target32)
    sam = band_sam_degrees(pred32, target32)
    loss = w_smooth_l1 * smooth_l1 + w_ms_ssim * (1.0 - similarity) + w_sam * sam
    parts = {
        "smooth_l1": float(smooth_l1.detach()),
        "ms_ssim": float(similarity.detach()),
        "sam_deg": float(sam.detach()),
    }
    return loss, parts
