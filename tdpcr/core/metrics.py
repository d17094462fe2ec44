"""Cloud-removal (PSNR, SSIM, RMSE, MAE, SAM) and segmentation (PA, mIoU, per-class IoU) metrics.

Conventions (``docs/data-formats.md``, "Metric conventions used by the peers"):

- Reflectance images are tensors ``(B, C, H, W)`` (``C = 13`` Sentinel-2 bands) in [0, 1].
  Prediction and target are clamped to [0, 1] first; the data range is 1.
- PSNR is computed **per image** over all bands, ``10 log10(1 / MSE)``, and averaged over
  images (CloudSeg ``test_joint.py``; GLF-CR averages over a whole batch instead, which is
  *not* what is reported here).
- SSIM: 11x11 Gaussian window, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, population
  covariance, per band then averaged over bands. This is exactly scikit-image's
  ``structural_similarity(target, pred, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=0)``, which skimage computes as the
  mean of the SSIM map over the interior of the image, leaving out a border of
  ``(11 - 1) // 2 = 5`` pixels on every side.
- RMSE and MAE per image over all bands of the selected pixels, reflectance units; SAM
  (spectral angle mapper) per pixel between the 13-band vectors, in **degrees**, averaged over
  the selected pixels of the image (torchmetrics' ``spectral_angle_mapper`` map; a pixel whose
  vector is all zero has no angle and is left out). Each is then averaged over images.
- Segmentation: one global confusion matrix over a split (rows = target, columns =
  prediction); target labels outside ``[0, num_classes)`` (255 = ignore) are left out;
  PA = overall accuracy; mIoU = nanmean of per-class IoU over classes with a non-empty union.
  The matrices are also kept per image, so a bootstrap can resample images and recompute mIoU
  from summed matrices.
- Regions (:data:`~tdpcr.core.specs.REGIONS`): all pixels; cloudy = corrupted pixels (cloud
  mask 1 = cloud or 2 = cloud shadow); clear = cloud mask 0. Pixels whose mask is 255
  (unknown) count only in the all-pixel scores.

Choices made here (the spec leaves them open):

- **Infinite PSNR.** :func:`psnr_per_image` returns ``+inf`` for an image with MSE 0 (a
  perfect reconstruction). :class:`ReconstructionMeter` caps per-image PSNR at
  ``psnr_cap = 100 dB`` before averaging (``MSE = 1e-10``, far below the uint16 DN
  quantisation of reflectance, whose MSE floor is about ``1e-8 / 12``, i.e. about 91 dB), so a
  perfect image counts as 100 dB instead of making the mean infinite. The number of capped
  images is kept in :attr:`ReconstructionMeter.num_capped`.
- **Masked SSIM.** The SSIM map is computed over the whole image (scipy's ``reflect`` =
  half-sample symmetric boundary, as skimage's Gaussian filter uses) and averaged over the
  masked pixels. By default (``crop_border=True``) the mask is intersected with the same
  interior skimage averages over, so an all-true mask gives exactly the unmasked value;
  cloud pixels in the 5-pixel border are then not scored. ``crop_border=False`` averages over
  every masked pixel, border included.
- Images whose mask selects no pixel give NaN; means over images skip NaN (a cloud-free image
  has no cloudy PSNR, it does not count as 0 or as perfect).

Everything runs on the input tensors' device (CPU or CUDA). PSNR and SSIM are computed in
float64, whatever the input dtype, and returned as float64 ``(B,)`` tensors.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from tdpcr.core.specs import (
    CLOUDMASK_CLEAR,
    CORRUPTED_VALUES,
    CR_BASE_METRICS,
    CR_METRICS,
    IGNORE_INDEX,
    REGIONS,
)

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WIN_SIZE",
    "PSNR_CAP_DB",
    "psnr_per_image",
    "ssim_map",
    "ssim_per_image",
    "ReconstructionMeter",
    "confusion_matrix",
    "pa_miou",
    "SegmentationMeter",
]

#: Gaussian window of SSIM: sigma, and the 11-tap width scipy / skimage derive from it with
#: ``truncate = 3.5`` (radius ``int(3.5 * 1.5 + 0.5) = 5``).
SSIM_SIGMA = 1.5
SSIM_WIN_SIZE = 2 * int(3.5 * SSIM_SIGMA + 0.5) + 1
#: SSIM stabilising constants, ``C1 = (K1 * R)^2``, ``C2 = (K2 * R)^2`` with data range R = 1.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Per-image PSNR cap applied by :class:`ReconstructionMeter` before averaging (dB).
PSNR_CAP_DB = 100.0


# --------------------------------------------------------------------------- helpers
def _check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"pred and target must both be (B, C, H, W) with the same shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )


def _prepare(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamp to [0, 1] and promote to float64."""
    _check_images(pred, target)
    return (
        pred.to(torch.float64).clamp(0.0, 1.0),
        target.to(torch.float64).clamp(0.0, 1.0),
    )


def _prepare_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """(B, H, W) or (B, 1, H, W) mask -> bool (B, H, W) on ``like``'s device."""
    if mask is None:
        return None
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    b, _, h, w = like.shape
    if tuple(mask.shape) != (b, h, w):
        raise ValueError(f"mask must be (B, H, W) = {(b, h, w)}, got {tuple(mask.shape)}")
    return mask.to(device=like.device, dtype=torch.bool)


def _symmetric_index(n: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` with scipy's ``reflect`` mode.

    scipy.ndimage ``reflect`` (= numpy ``symmetric``) repeats the edge sample:
    ``d c b a | a b c d | d c b a``. This is *not* torch's ``F.pad(mode="reflect")``
    (numpy ``reflect``, scipy ``mirror``: ``d c b | a b c d | c b a``).
    """
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _gaussian_kernel1d(
    sigma: float, radius: int, device: torch.device | None = None
) -> torch.Tensor:
    """scipy.ndimage's normalised 1-D Gaussian, float64 (2 * radius + 1,)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    phi = torch.exp(-0.5 / (sigma * sigma) * x * x)
    return phi / phi.sum()


#: Sides up to this length are filtered by a dense matrix product (faster on CPU than a
#: float64 conv2d for 256-pixel patches: O(n) work per pixel, but BLAS); longer ones by conv2d.
_MATMUL_MAX_SIDE = 512


@functools.lru_cache(maxsize=8)
def _filter_matrix_cpu(n: int, sigma: float) -> torch.Tensor:
    """float64 (n, n) M with ``M @ v`` = scipy's 1-D Gaussian filter of ``v`` (mode reflect).

    The symmetric boundary is folded into the matrix; built on the CPU by ``index_add_``
    (deterministic) and cached.
    """
    radius = (SSIM_WIN_SIZE - 1) // 2
    kernel = _gaussian_kernel1d(sigma, radius)
    cols = _symmetric_index(n, radius).unfold(0, 2 * radius + 1, 1)  # (n, 2r+1) source index
    flat = torch.arange(n).unsqueeze(1) * n + cols
    m = torch.zeros(n * n, dtype=torch.float64)
    m.index_add_(0, flat.reshape(-1), kernel.repeat(n))
    return m.reshape(n, n)


def _gaussian_filter_matmul(x: torch.Tensor, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Gaussian filter of float64 (N, H, W) as ``Mh @ x @ Mw^T`` (see :func:`_gaussian_filter`)."""
    _, h, w = x.shape
    mh = _filter_matrix_cpu(h, sigma).to(x.device)
    mw = _filter_matrix_cpu(w, sigma).to(x.device)
    return mh @ x @ mw.T


def _gaussian_filter_conv(x: torch.Tensor, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Gaussian filter of float64 (N, H, W): symmetric padding, then (11, 1) and (1, 11) convs."""
    _, h, w = x.shape
    radius = (SSIM_WIN_SIZE - 1) // 2
    kernel = _gaussian_kernel1d(sigma, radius, x.device)
    rows = _symmetric_index(h, radius, x.device)
    cols = _symmetric_index(w, radius, x.device)
    padded = x.index_select(1, rows).index_select(2, cols).unsqueeze(1)  # (N, 1, H+2r, W+2r)
    out = F.conv2d(padded, kernel.view(1, 1, -1, 1))
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    return out[:, 0]


def _gaussian_filter(x: torch.Tensor, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter(x, sigma, truncate=3.5, mode='reflect') over the last 2 dims.

    ``x``: float64 (N, H, W) -> (N, H, W). Separable 11-tap filter; implemented as two
    matrix products for sides up to :data:`_MATMUL_MAX_SIDE`, else as two 1-D convolutions.
    """
    if max(x.shape[-2:]) <= _MATMUL_MAX_SIDE:
        return _gaussian_filter_matmul(x, sigma)
    return _gaussian_filter_conv(x, sigma)


def _interior(h: int, w: int, device: torch.device) -> torch.Tensor:
    """bool (H, W): True except a border of ``(SSIM_WIN_SIZE - 1) // 2`` pixels (skimage's crop)."""
    pad = (SSIM_WIN_SIZE - 1) // 2
    inner = torch.zeros(h, w, dtype=torch.bool, device=device)
    inner[pad : h - pad, pad : w - pad] = True
    return inner


# --------------------------------------------------------------------------- PSNR / SSIM
def psnr_per_image(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image PSNR (dB) over all bands, data range 1, after clamping both to [0, 1].

    ``PSNR = 10 log10(1 / MSE)`` with MSE the mean squared error over every band of the
    selected pixels; equal to ``skimage.metrics.peak_signal_noise_ratio(target, pred,
    data_range=1)`` without a mask.

    Args:
        pred: (B, C, H, W) reflectance, any float dtype.
        target: the reference, the same shape.
        mask: optional (B, H, W) (or (B, 1, H, W)) boolean; only these pixels (all bands)
            are scored.

    Returns:
        float64 (B,) on the input device. ``+inf`` where MSE is 0 (see :data:`PSNR_CAP_DB`
        and :class:`ReconstructionMeter` for how means handle it); NaN where the mask is empty.
    """
    pred, target = _prepare(pred, target)
    sq = (pred - target).square().sum(dim=1)  # (B, H, W), summed over bands
    bands = pred.shape[1]
    m = _prepare_mask(mask, pred)
    if m is None:
        count = torch.full(
            (pred.shape[0],), float(sq[0].numel()), dtype=torch.float64, device=pred.device
        )
        sse = sq.flatten(1).sum(dim=1)
    else:
        count = m.flatten(1).sum(dim=1).to(torch.float64)
        sse = torch.where(m, sq, torch.zeros_like(sq)).flatten(1).sum(dim=1)
    mse = sse / (count * bands)  # 0 / 0 -> NaN for an empty mask
    psnr = 10.0 * torch.log10(1.0 / mse)  # 1 / 0 -> inf -> +inf dB
    return torch.where(count > 0, psnr, torch.full_like(psnr, math.nan))


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The full SSIM map per band, after clamping both to [0, 1].

    Same values as skimage's ``S`` (``structural_similarity(..., full=True)``) with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1``, border
    included (Gaussian moments with scipy's ``reflect`` boundary).

    Why not torchmetrics: ``torchmetrics.functional.structural_similarity_index_measure``
    has the same Gaussian window and interior, but pads with torch's ``reflect``
    (scipy's ``mirror``), so its ``return_full_image`` map differs from skimage's in the
    5-pixel border, it computes in the input dtype, and it cannot average over a pixel
    mask. The five Gaussian moments are therefore filtered here, in float64, with the
    boundary folded into the filter (see :func:`_gaussian_filter`).

    Args:
        pred: (B, C, H, W), H and W at least 11.
        target: the reference, the same shape.

    Returns:
        float64 (B, C, H, W).
    """
    pred, target = _prepare(pred, target)
    b, c, h, w = pred.shape
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}")
    x = pred.reshape(b * c, h, w)
    y = target.reshape(b * c, h, w)
    # One filter call for the five moments, stacked along the batch dimension.
    moments = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    ux, uy, uxx, uyy, uxy = moments.chunk(5, dim=0)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = SSIM_K1**2
    c2 = SSIM_K2**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, c, h, w)


def ssim_per_image(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    crop_border: bool = True,
) -> torch.Tensor:
    """Per-image SSIM averaged over bands (skimage's definition, see :func:`ssim_map`).

    Without a mask this equals ``skimage.metrics.structural_similarity(target, pred,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
    channel_axis=0)``: the per-band SSIM map averaged over the image interior (a border of
    ``(11 - 1) // 2 = 5`` pixels left out) and over bands.

    With a mask, the band-averaged SSIM map is averaged over the masked pixels; with
    ``crop_border=True`` (default) only over masked pixels of that same interior, so an
    all-true mask gives the unmasked value exactly. ``crop_border=False`` scores every
    masked pixel, border included (there the Gaussian moments use the symmetric boundary).

    Args:
        pred: (B, C, H, W) reflectance, clamped to [0, 1] here; H, W >= 11.
        target: the reference, the same shape.
        mask: optional (B, H, W) (or (B, 1, H, W)) boolean.
        crop_border: leave out the 5-pixel border (skimage's convention).

    Returns:
        float64 (B,) on the input device; NaN where no pixel is selected.
    """
    s = ssim_map(pred, target).mean(dim=1)  # (B, H, W), mean over bands
    return _reduce_ssim(s, _prepare_mask(mask, pred), crop_border)


def _reduce_ssim(s: torch.Tensor, mask: torch.Tensor | None, crop_border: bool) -> torch.Tensor:
    """Mean of a band-averaged SSIM map (B, H, W) over selected pixels -> (B,), NaN if none."""
    b, h, w = s.shape
    select = torch.ones(b, h, w, dtype=torch.bool, device=s.device)
    if crop_border:
        select = select & _interior(h, w, s.device)
    if mask is not None:
        select = select & mask
    count = select.flatten(1).sum(dim=1).to(torch.float64)
    total = torch.where(select, s, torch.zeros_like(s)).flatten(1).sum(dim=1)
    return total / count  # 0 / 0 -> NaN for an empty selection


def errors_per_image(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (RMSE, MAE) over every band of the selected pixels, after clamping to [0, 1].

    Written out rather than taken from torchmetrics: its MSE / MAE reduce over the whole batch
    and cannot select pixels; these are the same formulas per image and mask.

    Returns:
        two float64 (B,) tensors; NaN where the mask selects no pixel.
    """
    pred, target = _prepare(pred, target)
    diff = pred - target
    m = _prepare_mask(mask, pred)
    select = torch.ones_like(diff[:, 0], dtype=torch.bool) if m is None else m
    count = select.flatten(1).sum(dim=1).to(torch.float64) * pred.shape[1]
    zero = torch.zeros_like(diff[:, 0])
    sq = torch.where(select, diff.square().sum(dim=1), zero).flatten(1).sum(dim=1)
    ab = torch.where(select, diff.abs().sum(dim=1), zero).flatten(1).sum(dim=1)
    return (sq / count).sqrt(), ab / count  # 0 / 0 -> NaN for an empty selection


def sam_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectral angle (degrees) per pixel, (B, H, W) float64, after clamping to [0, 1].

    The formula of torchmetrics' ``spectral_angle_mapper`` (``reduction="none"``):
    arccos of the dot product over the norms' product, clamped to [-1, 1]; NaN where a vector
    is all zero (no direction). Written out, not imported: ``import torchmetrics`` loads its
    text metrics and transformers, 4.3 s in every evaluation and training process (about
    100 s of the default workflow); ``tests/test_metrics.py`` checks it equals torchmetrics'.
    """
    pred, target = _prepare(pred, target)
    dot = (pred * target).sum(dim=1)
    norms = torch.linalg.vector_norm(pred, dim=1) * torch.linalg.vector_norm(target, dim=1)
    return torch.rad2deg(torch.arccos((dot / norms).clamp(-1.0, 1.0)))


def _masked_nanmean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean of a (B, H, W) map over ``mask`` (all pixels if None), NaN left out."""
    select = ~torch.isnan(values)
    if mask is not None:
        select = select & mask
    count = select.flatten(1).sum(dim=1).to(values.dtype)
    total = torch.where(select, values, torch.zeros_like(values)).flatten(1).sum(dim=1)
    return total / count


def corrupted(cloudmask: torch.Tensor) -> torch.Tensor:
    """Pixels whose optical value is corrupted: cloud or cloud shadow."""
    out = torch.zeros_like(cloudmask, dtype=torch.bool)
    for value in CORRUPTED_VALUES:
        out |= cloudmask == value
    return out


def region_masks(
    cloudmask: torch.Tensor | None, like: torch.Tensor
) -> dict[str, torch.Tensor | None]:
    """Pixel selection of every region suffix: ``""`` all (None), ``_cloudy``, ``_clear``.

    Without a cloud mask only the all-pixel region exists (the others are absent).
    """
    masks: dict[str, torch.Tensor | None] = {"": None}
    if cloudmask is None:
        return masks
    if cloudmask.ndim == 4 and cloudmask.shape[1] == 1:
        cloudmask = cloudmask[:, 0]
    cloudmask = cloudmask.to(like.device)
    masks["_cloudy"] = corrupted(cloudmask)
    masks["_clear"] = cloudmask == CLOUDMASK_CLEAR
    return masks


class ReconstructionMeter:
    """Accumulates per-image PSNR / SSIM / RMSE / MAE / SAM: all pixels, cloudy, clear.

    ``update(pred, target, cloudmask)`` scores each image three times: over all pixels,
    over corrupted pixels (``cloudmask`` 1 = cloud or 2 = shadow) and over clear pixels
    (``cloudmask == 0``); unknown pixels (255) are in neither split. ``compute()`` returns the
    mean over images of each score, skipping NaN (an image without cloudy pixels has no
    cloudy score). Per-image PSNR is capped at ``psnr_cap`` dB before averaging, so a
    perfect reconstruction (MSE 0, PSNR +inf) counts as ``psnr_cap``; ``psnr_cap=None``
    keeps +inf (the mean then becomes inf).

    Args:
        psnr_cap: cap in dB (default :data:`PSNR_CAP_DB` = 100) or None.
        crop_border: as in :func:`ssim_per_image`, for the cloudy / clear SSIM (the
            all-pixel SSIM is always skimage's, i.e. interior-only). The SSIM map is
            computed once per batch and averaged over the three pixel sets.
        scores: the base metrics to compute (of :data:`CR_BASE_METRICS`); the others stay
            NaN. Training's validation asks for PSNR and SSIM only: SAM, RMSE and MAE would
            be a third of its cost and nothing reads them there.
    """

    def __init__(
        self,
        psnr_cap: float | None = PSNR_CAP_DB,
        crop_border: bool = True,
        scores: tuple[str, ...] = CR_BASE_METRICS,
    ) -> None:
        unknown = sorted(set(scores) - set(CR_BASE_METRICS))
        if unknown:
            raise ValueError(f"unknown reconstruction scores {unknown}; expected {CR_BASE_METRICS}")
        self.psnr_cap = psnr_cap
        self.crop_border = crop_border
        self.scores = scores
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._values: dict[str, list[torch.Tensor]] = {k: [] for k in CR_METRICS}
        #: Images whose all-pixel PSNR was capped (cloudy / clear values are capped too).
        self.num_capped = 0
        self.images = 0

    @torch.no_grad()
    def update(
        self, pred: torch.Tensor, target: torch.Tensor, cloudmask: torch.Tensor | None = None
    ) -> None:
        """Add a batch.

        Args:
            pred: (B, C, H, W) reflectance (clamped to [0, 1] inside).
            target: the reference, the same shape.
            cloudmask: optional (B, H, W) (or (B, 1, H, W)) integer mask, 1 = cloud,
                2 = shadow, 0 = clear, 255 = unknown. Without it, only the all-pixel scores get
                values.

        Raises:
            ValueError: if ``pred`` contains NaN (clamping would not hide it, and NaN-aware
                means would silently drop the image).
        """
        _check_images(pred, target)
        if torch.isnan(pred).any():
            raise ValueError("ReconstructionMeter: the prediction contains NaN")
        b = pred.shape[0]
        nan = torch.full((b,), math.nan, dtype=torch.float64)
        wanted = set(self.scores)
        # SSIM and SAM maps are computed once per batch and reduced for each region.
        smap = ssim_map(pred, target).mean(dim=1) if "ssim" in wanted else None  # (B, H, W)
        angles = sam_map(pred, target) if "sam" in wanted else None
        masks = region_masks(cloudmask, pred)
        values: dict[str, torch.Tensor] = {k: nan for k in CR_METRICS}
        for region, m in masks.items():
            if "psnr" in wanted:
                values[f"psnr{region}"] = psnr_per_image(pred, target, m)
            if smap is not None:
                # The all-pixel SSIM is always skimage's (interior only).
                crop = True if m is None else self.crop_border
                values[f"ssim{region}"] = _reduce_ssim(smap, _prepare_mask(m, pred), crop)
            if wanted & {"rmse", "mae"}:
                rmse, mae = errors_per_image(pred, target, m)
                values[f"rmse{region}"], values[f"mae{region}"] = rmse, mae
            if angles is not None:
                values[f"sam{region}"] = _masked_nanmean(angles, m)
        for key, v in values.items():
            v = v.detach().to("cpu", torch.float64)
            if key.startswith("psnr") and self.psnr_cap is not None:
                capped = v > self.psnr_cap
                if key == "psnr":
                    self.num_capped += int(capped.sum())
                v = torch.where(capped, torch.full_like(v, self.psnr_cap), v)
            self._values[key].append(v)
        self.images += b

    def per_image(self) -> dict[str, torch.Tensor]:
        """Per-image scores so far (PSNR capped as in ``compute``): name -> float64 (N,)."""
        return {
            k: torch.cat(v) if v else torch.zeros(0, dtype=torch.float64)
            for k, v in self._values.items()
        }

    def compute(self) -> dict[str, float]:
        """Means over images (NaN-aware) of every name in :data:`CR_METRICS`; ``images`` =
        images seen.

        A mean is NaN when no image has a value for it (e.g. no cloudy pixel at all).
        """
        out: dict[str, float] = {}
        for key, v in self.per_image().items():
            valid = v[~torch.isnan(v)]
            out[key] = float(valid.mean()) if valid.numel() else math.nan
        out["images"] = self.images
        return out


# --------------------------------------------------------------------------- segmentation
def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Confusion matrix ``cm[t, p]`` = number of pixels of target class t predicted as p.

    Pixels whose target is ``ignore_index`` or outside ``[0, num_classes)`` are left out, as
    are pixels where ``mask`` is False. Uses ``torch.bincount`` (exact integer counts,
    deterministic on CPU and CUDA since no weights are given).

    Args:
        pred: (B, H, W) integer class indices, or (B, num_classes, H, W) scores/logits
            (argmax over dim 1 is taken).
        target: (B, H, W) integer labels.
        num_classes: number of classes K.
        ignore_index: target label to skip (also skipped by the range check).
        mask: optional (B, H, W) boolean; only these pixels count.

    Returns:
        int64 (K, K) on the input device.

    Raises:
        ValueError: shapes differ, or a counted pixel has a prediction outside [0, K).
    """
    if pred.ndim == target.ndim + 1:
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    target = target.to(torch.int64)
    pred = pred.to(device=target.device, dtype=torch.int64)
    valid = (target >= 0) & (target < num_classes) & (target != ignore_index)
    if mask is not None:
        if mask.shape != target.shape:
            raise ValueError(f"mask {tuple(mask.shape)} and target {tuple(target.shape)} differ")
        valid = valid & mask.to(device=target.device, dtype=torch.bool)
    t = target[valid]
    p = pred[valid]
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predicted class outside [0, {num_classes}) at a labelled pixel")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def pa_miou(cm: torch.Tensor) -> tuple[float, float, list[float]]:
    """Pixel accuracy, mIoU and per-class IoU from a (K, K) confusion matrix (rows = target).

    ``IoU_c = TP / (TP + FP + FN)``; a class with an empty union (absent from both target and
    prediction) has IoU NaN and is left out of the mean (nanmean). PA = trace / total.
    Everything is NaN for an empty matrix.

    Returns:
        (pa, miou, per_class_iou) as Python floats, ``per_class_iou`` of length K.
    """
    cm = cm.detach().to("cpu", torch.float64)
    tp = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))
    total = float(cm.sum())
    pa = float(tp.sum()) / total if total > 0 else math.nan
    present = iou[~torch.isnan(iou)]
    miou = float(present.mean()) if present.numel() else math.nan
    return pa, miou, [float(v) for v in iou]


class SegmentationMeter:
    """Confusion matrices per image and over a split: all pixels, cloudy and clear.

    ``update(pred, target, cloudmask)`` computes, for every image, one (K, K) int64 matrix per
    region (:data:`~tdpcr.core.specs.REGIONS`): all labelled pixels; corrupted ones (cloud mask
    1 or 2); clear ones (mask 0). Unknown cloud-mask pixels (255) only count in the all-pixel
    matrix. The split's matrices are the sums (:attr:`cm`, :attr:`cm_cloudy`,
    :attr:`cm_clear`); the per-image ones (:meth:`per_image`) let a bootstrap recompute mIoU.

    A bincount is used rather than torchmetrics' ``MulticlassConfusionMatrix``: that class
    also bincounts, but would need three instances and a relabelling of the target to pass
    the cloudy / clear pixel masks; here the masks are applied directly.

    Args:
        num_classes: K (7 for the LuojiaSET-OSFCR legend).
        ignore_index: target label left out (255).
    """

    def __init__(self, num_classes: int = 7, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self._per_image: dict[str, list[torch.Tensor]] = {r: [] for r in REGIONS}

    @torch.no_grad()
    def update(
        self, pred: torch.Tensor, target: torch.Tensor, cloudmask: torch.Tensor | None = None
    ) -> None:
        """Add a batch.

        Args:
            pred: (B, H, W) class indices or (B, K, H, W) scores.
            target: (B, H, W) labels, 255 = ignore.
            cloudmask: optional (B, H, W) (or (B, 1, H, W)), 1 = cloud, 2 = shadow,
                0 = clear, 255 = unknown. Without it the cloudy / clear matrices stay empty.
        """
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(dim=1)
        k, ig = self.num_classes, self.ignore_index
        masks = region_masks(cloudmask, target)
        for region in REGIONS:
            m = masks.get(region, False)
            for i in range(target.shape[0]):
                if m is False:
                    cm = torch.zeros(k, k, dtype=torch.int64)
                else:
                    mask_i = None if m is None else m[i : i + 1]
                    cm = confusion_matrix(pred[i : i + 1], target[i : i + 1], k, ig, mask_i)
                self._per_image[region].append(cm.cpu())

    def per_image(self) -> dict[str, torch.Tensor]:
        """Region suffix -> (N, K, K) int64 confusion matrices of the images so far."""
        k = self.num_classes
        return {
            r: torch.stack(v) if v else torch.zeros(0, k, k, dtype=torch.int64)
            for r, v in self._per_image.items()
        }

    def _total(self, region: str) -> torch.Tensor:
        return self.per_image()[region].sum(dim=0)

    @property
    def cm(self) -> torch.Tensor:
        """(K, K) confusion matrix over all labelled pixels of the split."""
        return self._total("")

    @property
    def cm_cloudy(self) -> torch.Tensor:
        """Over corrupted (cloud or shadow) pixels."""
        return self._total("_cloudy")

    @property
    def cm_clear(self) -> torch.Tensor:
        """Over clear pixels."""
        return self._total("_clear")

    def compute(self) -> dict[str, float | list[float]]:
        """``pa``, ``miou``, ``per_class_iou`` and the same with ``_cloudy`` / ``_clear``."""
        out: dict[str, float | list[float]] = {}
        for region in REGIONS:
            pa, miou, per_class = pa_miou(self._total(region))
            out[f"pa{region}"] = pa
            out[f"miou{region}"] = miou
            out[f"per_class_iou{region}"] = per_class
        return out
