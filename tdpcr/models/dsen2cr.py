"""DSen2-CR: deep residual SAR-optical cloud removal baseline.

Re-implemented in PyTorch after Meraner et al., "Cloud removal in Sentinel-2 imagery using a
deep residual neural network and SAR-optical data fusion" (ISPRS J. 2020) and its public Keras
code (ameraner/dsen2-cr, ``Code/dsen2cr_network.py``): concat S2 + S1 -> 3x3 conv + ReLU ->
residual blocks (3x3 conv, ReLU, 3x3 conv, scaled, added) -> 3x3 conv to the S2 bands, added
to the cloudy S2 input (long skip). The Keras code defaults to 32 blocks; the model the paper
tables compare against has 16, as here. Initialisation as the reference (He uniform, zero
biases) except the tail conv, which starts at zero so the model starts at the identity (the
rule for every residual reconstruction model of this project). At that size (256 features) it
has 18,947,341 parameters and 1,241.2 G MACs on one 256 x 256 sample.

Shapes use B = batch, H/W = height/width.
"""

from __future__ import annotations

import torch
from torch import nn

from tdpcr.models.nafnet import zero_init_


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, scaled by ``residual_scale`` and added to the input.

    The small scale (0.1) keeps the 16-block stack stable without normalisation layers.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, features: int, residual_scale: float = 0.1) -> None:
        super().__init__()
        self.residual_scale = residual_scale
        self.body = nn.Sequential(
            nn.Conv2d(features, features, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


class DSen2CR(nn.Module):
    """DSen2-CR cloud-removal network.

    Shapes: optical (B, in_optical, H, W), sar (B, in_sar, H, W) -> dict with
    ``image`` (B, in_optical, H, W). Any H, W work (all convs are stride 1, padding 1).
    """

    def __init__(
        self,
        in_optical: int = 13,
        in_sar: int = 2,
        features: int = 256,
        num_blocks: int = 16,
        residual_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_optical = in_optical
        self.in_sar = in_sar
        self.head = nn.Sequential(
            nn.Conv2d(in_optical + in_sar, features, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            *[ResidualBlock(features, residual_scale) for _ in range(num_blocks)]
        )
        self.tail = nn.Conv2d(features, in_optical, kernel_size=3, padding=1)
        # The reference initialises every conv with Keras' he_uniform and zero biases...
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # ...but its tail, like every residual reconstruction model here (TDP-CR's ending
        # conv too), starts at zero: the untrained model returns the cloudy input (identity)
        # instead of the input plus He-scaled noise (tdpcr.models.nafnet.zero_init_).
        zero_init_(self.tail)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.cat([optical, sar], dim=1)
        x = self.tail(self.blocks(self.head(x)))
        # Long skip: the network predicts a correction to the cloudy image.
        return {"image": optical + x}
