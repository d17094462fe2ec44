"""TDP-CR: task-driven prompt learning for joint SAR-optical cloud removal and segmentation.

Reconstruction of the model in Zhang, Li, Shi, Yuan, "Task-Driven Prompt Learning: A Joint
Framework for Multi-modal Cloud Removal and Segmentation" (arXiv 2601.12052). No official code
is public; the paper fixes the structure below, the rest are our choices (marked "open").

Structure (defaults = paper size, width 32, blocks [2, 2, 2, 2]):

* optical encoder: intro 3x3 conv (13 -> 32), 4 stages of NAFBlocks at widths
  [32, 64, 128, 256], a NAFNet downsample (2x2 stride-2 conv, C -> 2C) after every stage, so
  the decoder starts from a 512-channel bottleneck at 1/16 resolution (no middle blocks);
* SAR encoder: mirrors the optical one (intro 2 -> 32, same stages). It has no downsample after
  its last stage: nothing consumes the SAR stream past the last fusion, and a layer whose
  output is never used would only inflate the parameter count (open);
* prompt generator g(I_c): three 3x3 convs with GELU, 13 -> hidden -> hidden -> C_p = 8;
* PromptGuidedFusion at every stage output: the fused optical stream continues, the SAR stream
  continues unchanged;
* shared reconstruction decoder: NAFNet up (1x1 conv + PixelShuffle), skip added, NAFBlocks;
  ending 3x3 conv (32 -> 13) and a global residual to the cloudy optical input;
* optional segmentation head (phase 2) over the four decoder scales.

Parameter count at paper size (checked by tests/test_models.py): CR-only 5,746,005 (paper
5.92 M, -2.9 %), Full with 7 classes and head width 8: 5,780,828 (paper 5.95 M, -2.8 %).
The open choices that land there:

* psi hidden width = 2C (``psi_ratio=2.0``, the expansion NAFNet uses in its FFN). With psi
  hidden C/4 and no dead SAR downsample the model has 5.44 M parameters (-8 %); the 5.94 M
  figure for C/4 in the project notes (shared/docs/model.md) counts a final SAR downsample
  (524,800 parameters) whose output nobody uses, which we do not build;
* PGF global FC bottleneck width max(C // 16, 32) (selective-kernel networks' L = 32);
* prompt generator hidden width 32 (= encoder width);
* segmentation head width 8 (adds 34,823 parameters for 7 classes; paper gap 30 K).

MACs (fvcore, one 256 x 256 sample, see tdpcr.benchmarks.complexity): 14.27 G CR-only and
14.57 G Full, below the paper's 34.3 G / 38.2 G whether those are read as MACs or as FLOPs
(2 x MACs = 28.5 G / 29.1 G). We do not pad the model to reach those numbers (the paper's
counting convention is unknown).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tdpcr.models.inputs import check_paired_inputs
from tdpcr.models.nafnet import naf_downsample, naf_stage, naf_upsample, zero_init_

PGFMode = Literal["both", "global", "local"]
PGF_MODES: tuple[str, ...] = ("both", "global", "local")


class PromptGenerator(nn.Module):
    """Task prompt from the cloudy optical image: three 3x3 convs with GELU between them.

    Full resolution throughout (padding 1, stride 1).

    Shapes: (B, in_channels, H, W) -> (B, prompt_channels, H, W).
    """

    def __init__(
        self, in_channels: int = 13, hidden_channels: int = 32, prompt_channels: int = 8
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden_channels, prompt_channels, kernel_size=3, padding=1),
        )

    def forward(self, optical: torch.Tensor) -> torch.Tensor:
        return self.body(optical)


class PromptGuidedFusion(nn.Module):
    """Prompt-guided fusion (PGF) of one encoder stage's optical and SAR features.

    Per-channel, per-pixel modality weights come from two branches whose logits are summed:

    * global: z = GAP(F_o + F_s) -> 1x1 conv C -> d -> ReLU -> 1x1 conv d -> 2C, with
      d = max(C // reduction, min_hidden) (selective-kernel bottleneck), broadcast over H, W;
    * local: the prompt, bilinearly resized to the stage resolution -> depthwise 3x3 ->
      1x1 conv C_p -> 2C, one logit pair per pixel and channel.

    A softmax over the two modalities gives (a_o, a_s); F_fused = a_o * F_o + a_s * F_s and the
    output is F_o + psi(F_fused), psi = 1x1 conv C -> psi_hidden -> GELU -> 1x1 conv -> C.

    ``mode`` selects the branches for the ablation: "both", "global" (the local branch is not
    built, the prompt is ignored and may be None) or "local" (the global branch is not built,
    so the weights depend on the prompt only).

    Shapes: f_opt, f_sar (B, C, h, w); prompt (B, C_p, H', W') at any resolution ->
    (out (B, C, h, w), weights (B, 2, C, h, w)); weights[:, 0] is the optical weight.
    """

    def __init__(
        self,
        channels: int,
        prompt_channels: int = 8,
        mode: PGFMode = "both",
        reduction: int = 16,
        min_hidden: int = 32,
        psi_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in PGF_MODES:
            raise ValueError(f"PGF mode must be one of {PGF_MODES}, got {mode!r}")
        self.channels = channels
        self.mode = mode
        # Branches a mode does not use are not built at all: no parameters that cannot learn,
        # and no way for an unused branch to leak into the output.
        self.global_branch: nn.Sequential | None = None
        self.local_branch: nn.Sequential | None = None
        if mode in ("both", "global"):
            hidden = max(channels // reduction, min_hidden)
            self.global_branch = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(channels, hidden, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, 2 * channels, kernel_size=1),
            )
        if mode in ("both", "local"):
            self.local_branch = nn.Sequential(
                nn.Conv2d(
                    prompt_channels,
                    prompt_channels,
                    kernel_size=3,
                    padding=1,
                    groups=prompt_channels,
                ),
                nn.Conv2d(prompt_channels, 2 * channels, kernel_size=1),
            )
        psi_hidden = channels if psi_hidden is None else psi_hidden
        self.psi = nn.Sequential(
            nn.Conv2d(channels, psi_hidden, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(psi_hidden, channels, kernel_size=1),
        )

    def modality_logits(
        self, f_opt: torch.Tensor, f_sar: torch.Tensor, prompt: torch.Tensor | None
    ) -> torch.Tensor:
        """Unnormalised modality logits, (B, 2, C, h, w) (h = w = 1 in global mode, unless
        test-time local statistics make the global branch per pixel)."""
        b, c, h, w = f_opt.shape
        logits: torch.Tensor | None = None
        if self.global_branch is not None:
            # (B, 2C, 1, 1), broadcast below; (B, 2C, h, w) under local statistics.
            logits = self.global_branch(f_opt + f_sar)
        if self.local_branch is not None:
            if prompt is None:
                raise ValueError(f"PGF mode {self.mode!r} needs a prompt, got None")
            if prompt.shape[-2:] != (h, w):
                prompt = F.interpolate(prompt, size=(h, w), mode="bilinear", align_corners=False)
            local = self.local_branch(prompt)  # (B, 2C, h, w)
            logits = local if logits is None else logits + local
        assert logits is not None  # guaranteed by the mode check in __init__
        return logits.view(b, 2, c, logits.shape[-2], logits.shape[-1])

    def prompt_sar_preference(self, prompt: torch.Tensor) -> torch.Tensor | None:
        """The SAR weight this fusion would give from the prompt alone, channel-averaged.

        sigmoid(mean over channels of the local branch's SAR-minus-optical logit): 0.5 means
        the prompt prefers neither modality, towards 1 that it marks the optical features as
        degraded. None without a local branch ("global" mode).

        Shapes: prompt (B, C_p, h, w) at this stage's resolution -> (B, 1, h, w).
        """
        if self.local_branch is None:
            return None
        b, _, h, w = prompt.shape
        local = self.local_branch(prompt).view(b, 2, self.channels, h, w)
        return torch.sigmoid((local[:, 1] - local[:, 0]).mean(dim=1, keepdim=True))

    def forward(
        self, f_opt: torch.Tensor, f_sar: torch.Tensor, prompt: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.modality_logits(f_opt, f_sar, prompt), dim=1)
        fused = weights[:, 0] * f_opt + weights[:, 1] * f_sar
        out = f_opt + self.psi(fused)
        return out, weights.expand(-1, -1, -1, f_opt.shape[-2], f_opt.shape[-1])


class SegmentationHead(nn.Module):
    """Multi-scale segmentation head over the decoder's outputs.

    Each scale: 3x3 conv to ``head_width`` -> GELU -> bilinear upsample to the output size;
    the scales are concatenated and a 1x1 conv gives the class logits. The paper names the
    convs, upsampling and concat; the GELU is ours (open): without it the head would be
    linear in the decoder features, which stay frozen under PEFT.

    Shapes: list of (B, C_l, H_l, W_l) (one per entry of ``in_channels``) -> (B, K, H, W).
    """

    def __init__(self, in_channels: list[int], num_classes: int, head_width: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.head_width = head_width
        self.scale_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, head_width, kernel_size=3, padding=1), nn.GELU())
            for c in in_channels
        )
        self.classifier = nn.Conv2d(head_width * len(in_channels), num_classes, kernel_size=1)

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        if len(features) != len(self.scale_convs):
            raise ValueError(f"expected {len(self.scale_convs)} scales, got {len(features)}")
        ups = []
        for conv, feat in zip(self.scale_convs, features, strict=True):
            y = conv(feat)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            ups.append(y)
        return self.classifier(torch.cat(ups, dim=1))


class TDPCR(nn.Module):
    """TDP-CR: dual NAFNet encoders + PGF + shared reconstruction decoder (+ segmentation head).

    See the module docstring for the structure and the open choices. ``num_classes=None``
    builds the cloud-removal-only model (phase 1); a head can be attached later with
    :meth:`attach_head` (phase 2) without touching the other weights.

    Shapes: optical (B, in_optical, H, W), sar (B, in_sar, H, W), H and W divisible by
    2 ** len(enc_blocks) (16 at paper size). ``forward`` returns a dict with

    * ``image``: (B, out_channels, H, W), the cloud-free estimate;
    * ``logits``: (B, num_classes, H, W), only when a head is attached;
    * ``prompt``: (B, prompt_channels, H, W), only with ``return_prompt=True`` (None in
      "global" PGF mode, which has no prompt generator);
    * ``weights``: list over stages of (B, 2, C_l, H / 2**l, W / 2**l) modality weights
      (index 0 = optical, 1 = SAR; they sum to 1 over dim 1), only with ``return_weights``.
    """

    #: Submodule names of each parameter group (used by tdpcr.models.peft).
    PARAM_GROUPS: dict[str, tuple[str, ...]] = {
        "optical_encoder": ("opt_intro", "opt_stages", "opt_downs"),
        "sar_encoder": ("sar_intro", "sar_stages", "sar_downs"),
        "prompt": ("prompt_generator",),
        "fusion": ("pgf",),
        "decoder": ("ups", "dec_stages", "ending"),
        "head": ("seg_head",),
    }

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
        out_channels: int = 13,
        width: int = 32,
        enc_blocks: tuple[int, ...] | list[int] = (2, 2, 2, 2),
        dec_blocks: tuple[int, ...] | list[int] = (2, 2, 2, 2),
        prompt_channels: int = 8,
        prompt_hidden: int = 32,
        pgf_mode: PGFMode = "both",
        pgf_reduction: int = 16,
        pgf_min_hidden: int = 32,
        psi_ratio: float = 2.0,
        num_classes: int | None = None,
        head_width: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        enc_blocks, dec_blocks = tuple(enc_blocks), tuple(dec_blocks)
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(
                f"enc_blocks and dec_blocks need the same number of stages (one skip each), "
                f"got {enc_blocks} and {dec_blocks}"
            )
        if out_channels != in_optical:
            raise ValueError(
                f"out_channels ({out_channels}) must equal in_optical ({in_optical}): the "
                "output is a residual on the cloudy optical input"
            )
        self.in_optical = in_optical
        self.in_sar = in_sar
        self.pgf_mode = pgf_mode
        self.num_stages = len(enc_blocks)
        self.stage_channels = [width * 2**i for i in range(self.num_stages)]

        # Optical encoder: stage then downsample, NAFNet style.
        self.opt_intro = nn.Conv2d(in_optical, width, kernel_size=3, padding=1)
        self.opt_stages = nn.ModuleList(
            naf_stage(c, n, dropout) for c, n in zip(self.stage_channels, enc_blocks, strict=True)
        )
        self.opt_downs = nn.ModuleList(naf_downsample(c) for c in self.stage_channels)

        # SAR encoder mirrors the optical one, minus the last downsample (its output would
        # feed nothing).
        self.sar_intro = nn.Conv2d(in_sar, width, kernel_size=3, padding=1)
        self.sar_stages = nn.ModuleList(
            naf_stage(c, n, dropout) for c, n in zip(self.stage_channels, enc_blocks, strict=True)
        )
        self.sar_downs = nn.ModuleList(naf_downsample(c) for c in self.stage_channels[:-1])

        # The "global" ablation never reads the prompt, so it has no prompt generator.
        self.prompt_generator: PromptGenerator | None = None
        if pgf_mode != "global":
            self.prompt_generator = PromptGenerator(in_optical, prompt_hidden, prompt_channels)
        self.pgf = nn.ModuleList(
            PromptGuidedFusion(
                c,
                prompt_channels,
                mode=pgf_mode,
                reduction=pgf_reduction,
                min_hidden=pgf_min_hidden,
                psi_hidden=max(1, round(psi_ratio * c)),
            )
            for c in self.stage_channels
        )

        # Shared reconstruction decoder, coarsest scale first.
        bottleneck = 2 * self.stage_channels[-1]
        dec_channels = [bottleneck // 2 ** (i + 1) for i in range(self.num_stages)]
        self.decoder_channels = dec_channels
        self.ups = nn.ModuleList(naf_upsample(2 * c) for c in dec_channels)
        self.dec_stages = nn.ModuleList(
            naf_stage(c, n, dropout) for c, n in zip(dec_channels, dec_blocks, strict=True)
        )
        # Zero-initialised: the untrained model returns the cloudy input (identity), the
        # initialisation rule of every residual reconstruction model here (see zero_init_).
        self.ending = zero_init_(nn.Conv2d(width, out_channels, kernel_size=3, padding=1))

        self.seg_head: SegmentationHead | None = None
        if num_classes is not None:
            self.attach_head(num_classes, head_width)

    @property
    def size_divisor(self) -> int:
        """H and W of the inputs must be multiples of this (2 ** number of stages)."""
        return 2**self.num_stages

    @property
    def num_classes(self) -> int | None:
        """Number of segmentation classes, None without a head."""
        return None if self.seg_head is None else self.seg_head.num_classes

    def attach_head(self, num_classes: int, head_width: int = 8) -> SegmentationHead:
        """Build the segmentation head (on the model's device and dtype) and return it."""
        if self.seg_head is not None:
            raise ValueError("the model already has a segmentation head")
        ref = self.ending.weight
        self.seg_head = SegmentationHead(self.decoder_channels, num_classes, head_width).to(
            device=ref.device, dtype=ref.dtype
        )
        return self.seg_head

    def prompt_degradation(self, prompt: torch.Tensor | None) -> torch.Tensor | None:
        """The prompt's degradation estimate at full resolution, in [0, 1] (see
        :meth:`PromptGuidedFusion.prompt_sar_preference`, first stage); None without a prompt.

        Shapes: prompt (B, C_p, H, W) -> (B, 1, H, W).
        """
        if prompt is None:
            return None
        return self.pgf[0].prompt_sar_preference(prompt)

    def forward(
        self,
        optical: torch.Tensor,
        sar: torch.Tensor,
        return_prompt: bool = False,
        return_weights: bool = False,
    ) -> dict[str, torch.Tensor | list[torch.Tensor] | None]:
        check_paired_inputs(
            "TDP-CR", optical, sar, self.size_divisor, f"2 ** {self.num_stages} stages"
        )
        h, w = optical.shape[-2:]

        prompt = self.prompt_generator(optical) if self.prompt_generator is not None else None

        x_o = self.opt_intro(optical)
        x_s = self.sar_intro(sar)
        skips: list[torch.Tensor] = []
        weights: list[torch.Tensor] = []
        for i in range(self.num_stages):
            f_o = self.opt_stages[i](x_o)
            f_s = self.sar_stages[i](x_s)
            f_o, a = self.pgf[i](f_o, f_s, prompt)
            skips.append(f_o)
            weights.append(a)
            x_o = self.opt_downs[i](f_o)
            if i < len(self.sar_downs):
                x_s = self.sar_downs[i](f_s)

        x = x_o
        dec_feats: list[torch.Tensor] = []
        for up, stage, skip in zip(self.ups, self.dec_stages, reversed(skips), strict=True):
            x = stage(up(x) + skip)
            dec_feats.append(x)

        out: dict[str, torch.Tensor | list[torch.Tensor] | None] = {
            "image": self.ending(x) + optical,
        }
        if self.seg_head is not None:
            out["logits"] = self.seg_head(dec_feats, (h, w))
        if return_prompt:
            out["prompt"] = prompt
        if return_weights:
            out["weights"] = weights
        return out
