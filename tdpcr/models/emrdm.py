"""EMRDM: mean-reverting diffusion for SAR-optical cloud removal (baseline).

Re-implemented for this project after Liu et al., "EMRDM: Enhanced Mean-Reverting Diffusion
Models for Cloud Removal" (CVPR 2025), from the facts in the project notes
(``shared/docs/baselines.md``, section "3. EMRDM"); the upstream code (Ly403/EMRDM) is
AGPL-3.0 and none of it is copied. The denoiser network is
:class:`tdpcr.models.emrdm_denoiser.HourglassDenoiser`.

Data space. Reflectance in [0, 1] (and SAR scaled to [0, 1]) maps to [-1, 1] by ``2 x - 1``,
as the published SEN12MS-CR pipeline does after its own [0, 1] scaling (S2 clipped to
[0, 10000] / 10000, S1 clipped to [-25, 0] dB, min-max scaled). The cloudy S2 image is the
mean mu of the process, and cat(S1, cloudy S2) (15 channels) is concatenated to the scaled
noisy input (13), so the network sees 28 channels. :meth:`EMRDM.forward` maps the sample back
by ``(x + 1) / 2`` without clipping: the published sampler returns its last Euler step as is.

Mean-reverting diffusion in EDM form (alpha = 3, sigma is the time variable). With
r(sigma) = alpha * sigma (= (1 - s) / s for the scale s = 1 / (1 + alpha * sigma)):

* noising: x_sigma = x0 + r(sigma) * mu + sigma * eps;
* preconditioning, with m = (r * sigma_mu)^2, v = sigma_cov * r and
  Z = sigma^2 + sigma_data^2 + m + 2 v (the variance of x_sigma when x0 and mu have variances
  sigma_data^2, sigma_mu^2 and covariance sigma_cov):
  c_skip = (sigma_data^2 + v) / Z, c_out = sqrt(((sigma^2 + m) sigma_data^2 - v^2) / Z),
  c_in = Z^-1/2, c_noise = ln(sigma) / 4; D(x; sigma) = c_skip x + c_out F(c_in x, c_noise);
  as sigma -> 0, c_skip -> 1 and c_out -> 0, so D(x; 0) = x;
* training: ln sigma ~ N(P_mean, P_std^2), loss mean(lambda (D(x_sigma; sigma) - x0)^2) with
  lambda = 1 / c_out^2;
* sampling: Karras schedule (rho 7, sigma 100 -> 0.001, 5 steps, then 0), start
  x = r(sigma_max) mu + sigma_max z, and per step a churn to sigma_hat = (1 + gamma) sigma
  (gamma = s_churn / steps = 1, uncapped) that also moves the mean term, one denoiser call and
  an Euler step along d = r'(sigma_hat) mu - (D + r(sigma_hat) mu - x) / sigma_hat. The last
  step lands on sigma = 0, where x equals the denoised estimate. 5 network evaluations.

EMA of the weights (0.9999 in the paper) is left to the trainer.

Shapes use B = batch, H/W = height/width.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tdpcr.models.emrdm_denoiser import HourglassDenoiser, LinearGEGLU, SelfAttentionBlock


class EMRDM(nn.Module):
    """EMRDM cloud removal: mean-reverting diffusion around the cloudy image, EDM-style.

    Defaults are the published SEN12MS-CR configuration (39,133,515 parameters). The denoiser
    works on multiples of ``patch_size * 2 ** (len(widths) - 1)`` (8 by default); other sizes
    are padded (edge replication) and the result cropped.

    ``forward`` samples with a local generator seeded by ``seed``: for a given seed the same
    inputs give the same output whatever the global RNG state (in eval mode; in train mode the
    mid level's dropout draws from the global RNG). The noise is drawn for the whole batch at
    once, so a sample's output also depends on its position in the batch.

    Shapes: optical (B, in_optical, H, W) reflectance in [0, 1], sar (B, in_sar, H, W) in
    [0, 1] -> dict with ``image`` (B, in_optical, H, W), reflectance (not clipped).
    """

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
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
        alpha: float = 3.0,
        sigma_data: float = 1.0,
        sigma_mu: float = 1.0,
        sigma_cov: float = 0.9,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_min: float = 0.001,
        sigma_max: float = 100.0,
        rho: float = 7.0,
        sampling_steps: int = 5,
        s_churn: float = 5.0,
        s_noise: float = 1.023,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if sampling_steps < 1:
            raise ValueError(f"sampling_steps must be at least 1, got {sampling_steps}")
        self.in_optical = in_optical
        self.in_sar = in_sar
        self.alpha = alpha
        self.sigma_data = sigma_data
        self.sigma_mu = sigma_mu
        self.sigma_cov = sigma_cov
        self.p_mean = p_mean
        self.p_std = p_std
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho
        self.sampling_steps = sampling_steps
        self.s_churn = s_churn
        self.s_noise = s_noise
        self.seed = seed
        # Input: the scaled noisy image, then the condition cat(S1, cloudy S2).
        self.denoiser = HourglassDenoiser(
            in_channels=2 * in_optical + in_sar,
            out_channels=in_optical,
            widths=widths,
            depths=depths,
            d_ffs=d_ffs,
            kernel_sizes=kernel_sizes,
            dropouts=dropouts,
            d_head=d_head,
            mapping_width=mapping_width,
            mapping_d_ff=mapping_d_ff,
            mapping_depth=mapping_depth,
            mapping_dropout=mapping_dropout,
            rope_reference_size=rope_reference_size,
            patch_size=patch_size,
        )
        #: Input sides that need no padding (other sizes are padded and cropped back).
        self.size_divisor = self.denoiser.downsampling_factor

    # --- the process -------------------------------------------------------------------

    def mean_coefficient(self, sigma: torch.Tensor) -> torch.Tensor:
        """r(sigma) = (1 - s) / s = alpha sigma: how much of mu the state holds at sigma."""
        return self.alpha * sigma

    def mean_coefficient_derivative(self, sigma: torch.Tensor) -> torch.Tensor:
        """dr/dsigma = -s'(sigma) / s(sigma)^2 = alpha."""
        return torch.full_like(sigma, self.alpha)

    def preconditioning(
        self, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) at noise level ``sigma`` (any shape, > 0)."""
        r = self.mean_coefficient(sigma)
        m = (r * self.sigma_mu) ** 2
        v = self.sigma_cov * r
        sd2 = self.sigma_data**2
        z = sigma**2 + sd2 + m + 2 * v
        c_skip = (sd2 + v) / z
        c_out = (((sigma**2 + m) * sd2 - v**2) / z).sqrt()
        c_in = z.rsqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = 1 / c_out^2 = Z / ((sigma^2 + m) sigma_data^2 - v^2)."""
        return self.preconditioning(sigma)[1].pow(-2)

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """D(x; sigma): the clean-image estimate in data space.

        Shapes: x (B, in_optical, H, W), sigma (B,), condition (B, in_sar + in_optical, H, W)
        -> (B, in_optical, H, W).
        """
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        c_skip, c_out, c_in = (c[:, None, None, None] for c in (c_skip, c_out, c_in))
        net_in = torch.cat([c_in * x, condition], dim=1)
        return c_skip * x + c_out * self.denoiser(net_in, c_noise)

    def sigmas(self, device: torch.device | None = None) -> torch.Tensor:
        """The sampling schedule: Karras et al.'s rho-spaced sigmas from sigma_max to
        sigma_min, then 0. Shapes: -> (sampling_steps + 1,)."""
        ramp = torch.linspace(0, 1, self.sampling_steps, device=device, dtype=torch.float64)
        inv_max, inv_min = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        sigmas = (inv_max + ramp * (inv_min - inv_max)) ** self.rho
        return torch.cat([sigmas, sigmas.new_zeros(1)]).float()

    # --- data mapping ------------------------------------------------------------------

    def _prepare(
        self, optical: torch.Tensor, sar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(mu, condition) in data space, padded to the denoiser's multiple, and the pad."""
        factor = self.denoiser.downsampling_factor
        height, width = optical.shape[-2:]
        pad = (-height % factor, -width % factor)
        mu = optical * 2 - 1
        condition = torch.cat([sar * 2 - 1, mu], dim=1)
        if any(pad):
            mu = F.pad(mu, (0, pad[1], 0, pad[0]), mode="replicate")
            condition = F.pad(condition, (0, pad[1], 0, pad[0]), mode="replicate")
        return mu, condition, pad

    # --- sampling and training ---------------------------------------------------------

    def sample(
        self, mu: torch.Tensor, condition: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The Euler sampler with churn, in data space (sampling_steps network evaluations).

        Shapes: mu (B, in_optical, H, W), condition (B, in_sar + in_optical, H, W)
        -> (B, in_optical, H, W).
        """
        sigmas = self.sigmas(mu.device).to(mu.dtype)
        # Churn gamma = s_churn / (number of sigmas - 1), without EDM's sqrt(2) - 1 cap.
        gamma = self.s_churn / self.sampling_steps
        batch = mu.shape[0]

        def noise() -> torch.Tensor:
            return torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)

        x = self.mean_coefficient(sigmas[0]) * mu + sigmas[0] * noise()
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            sigma_hat = sigma * (1 + gamma)
            if gamma > 0:
                # Move up to sigma_hat along the forward process: more mean, more noise.
                shift = self.mean_coefficient(sigma_hat) - self.mean_coefficient(sigma)
                x = x + shift * mu + self.s_noise * (sigma_hat**2 - sigma**2).sqrt() * noise()
            denoised = self.denoise(x, sigma_hat.expand(batch), condition)
            r_hat = self.mean_coefficient(sigma_hat)
            # dx/dsigma of x = x0 + r mu + sigma eps with eps estimated from D; for
            # r = alpha sigma this is (x - D) / sigma_hat, so the last step returns D.
            d = (
                self.mean_coefficient_derivative(sigma_hat) * mu
                - (denoised + r_hat * mu - x) / sigma_hat
            )
            x = x + (sigma_next - sigma_hat) * d
        return x

    def forward(
        self, optical: torch.Tensor, sar: torch.Tensor, target: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The sampled cloud-free image; with ``target`` (training) the diffusion loss instead.

        The loss goes through ``forward`` rather than :meth:`training_loss` alone so that
        wrappers that hook the forward call (DistributedDataParallel's gradient sync) see it:
        ``{"loss": scalar, "l2": scalar}``.
        """
        if target is not None:
            loss, parts = self.training_loss(optical, sar, target)
            return {"loss": loss, "l2": loss.new_tensor(parts["l2"])}
        height, width = optical.shape[-2:]
        mu, condition, _ = self._prepare(optical, sar)
        generator = torch.Generator(device=optical.device)
        generator.manual_seed(self.seed)
        x = self.sample(mu, condition, generator)
        return {"image": (x[..., :height, :width] + 1) / 2}

    def training_loss(
        self, optical: torch.Tensor, sar: torch.Tensor, clear: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM-weighted L2 of one training step, noise drawn from the global RNG.

        ln sigma ~ N(p_mean, p_std^2) per sample; x_sigma = x0 + r(sigma) mu + sigma eps;
        loss = mean over all elements of lambda(sigma) (D(x_sigma; sigma) - x0)^2.

        Shapes: optical, clear (B, in_optical, H, W) reflectance in [0, 1], sar
        (B, in_sar, H, W) in [0, 1] -> (scalar loss, {"loss": ..., "l2": unweighted MSE in
        data space}).
        """
        height, width = optical.shape[-2:]
        mu, condition, pad = self._prepare(optical, sar)
        x0 = clear * 2 - 1
        if any(pad):
            x0 = F.pad(x0, (0, pad[1], 0, pad[0]), mode="replicate")
        batch = x0.shape[0]
        sigma = (torch.randn(batch, device=x0.device) * self.p_std + self.p_mean).exp()
        sigma = sigma.to(x0.dtype)
        sigma_b = sigma[:, None, None, None]
        noisy = x0 + self.mean_coefficient(sigma_b) * mu + sigma_b * torch.randn_like(x0)
        denoised = self.denoise(noisy, sigma, condition)
        sq_err = (denoised - x0)[..., :height, :width].pow(2)
        loss = (self.loss_weight(sigma_b) * sq_err).mean()
        return loss, {"loss": float(loss.detach()), "l2": float(sq_err.detach().mean())}


# --- complexity ------------------------------------------------------------------------


def macs_per_evaluation(
    model: EMRDM | HourglassDenoiser, height: int = 256, width: int = 256
) -> dict[str, int]:
    """Multiply-adds of ONE denoiser evaluation on one height x width sample, and per image.

    Keys:

    * ``fvcore``: ``fvcore.nn.FlopCountAnalysis`` with its default handles: every linear layer
      (GEGLU up-projections included); attention products are invisible to it
      (``scaled_dot_product_attention`` has no handle, the neighbourhood attention is
      elementwise work);
    * ``table1``: ``fvcore`` less the GEGLU up-projections: the convention of EMRDM's published
      83.6 G (upstream computes GEGLU in a compiled function fvcore does not see);
    * ``attention``: the attention products QK^T and PV of every layer (analytic, per layer
      from the token map it saw);
    * ``full``: ``fvcore`` + ``attention``, the honest count per evaluation;
    * ``full_per_image``: ``full`` times the sampler's network evaluations (EMRDM only).

    Runs one traced forward pass in eval mode (seconds at 256^2 for the paper size).
    """
    denoiser = model.denoiser if isinstance(model, EMRDM) else model
    was_training = denoiser.training
    denoiser.eval()
    param = next(denoiser.parameters())
    x = torch.zeros(1, denoiser.in_channels, height, width, dtype=param.dtype)
    inputs = (x.to(param.device), torch.ones(1, dtype=param.dtype, device=param.device))
    attention: dict[str, int] = {}

    def recorder(name: str) -> Any:
        def hook(module: SelfAttentionBlock, args: tuple[torch.Tensor, ...], _: Any) -> None:
            b, h, w, _c = args[0].shape
            attention[name] = module.attention_macs(int(b), int(h), int(w))  # keyed: no repeats

        return hook

    handles = [
        module.register_forward_hook(recorder(name))
        for name, module in denoiser.named_modules()
        if isinstance(module, SelfAttentionBlock)
    ]
    fv_logger = logging.getLogger("fvcore")
    old_level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # fvcore's import warns about TorchScript's deprecation, the tracer about shapes
            # read as constants; neither matters for counting.
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(denoiser, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            fvcore_total = int(analysis.total())
            by_module = analysis.by_module()
    finally:
        fv_logger.setLevel(old_level)
        for handle in handles:
            handle.remove()
        denoiser.train(was_training)
    geglu = sum(
        int(by_module.get(name, 0))
        for name, module in denoiser.named_modules()
        if isinstance(module, LinearGEGLU)
    )
    attention_total = sum(attention.values())
    result = {
        "fvcore": fvcore_total,
        "table1": fvcore_total - geglu,
        "attention": attention_total,
        "full": fvcore_total + attention_total,
    }
    if isinstance(model, EMRDM):
        result["full_per_image"] = model.sampling_steps * result["full"]
    return result
