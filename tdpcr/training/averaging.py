"""Exponential moving average of a model's weights, with a warm-up of the decay.

EMRDM evaluates the moving average of its weights (decay 0.9999 in its published training).
At that decay the average of a 500-step run would still be 95 % its random initialisation,
so the decay warms up as TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` does:

    decay(t) = min(decay, (1 + t) / (10 + t))

which averages over roughly the last tenth of the steps taken so far early on (0.90 at step
80, 0.98 at step 500) and reaches the published 0.9999 only after about 90,000 steps.
``torch.optim.swa_utils.AveragedModel`` keeps the copy; the decay schedule is ours because
its ``get_ema_multi_avg_fn`` has a fixed decay.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

#: EMRDM's published decay, the ceiling of the warm-up.
PUBLISHED_DECAY = 0.9999


def decay_at(step: int, decay: float = PUBLISHED_DECAY) -> float:
    """The averaging decay after ``step`` updates (0 = the first update)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage(nn.Module):
    """The averaged copy of a model (parameters averaged, buffers copied).

    Shapes: as the wrapped model; ``averaged`` is what validation and checkpoints use.
    """

    def __init__(self, model: nn.Module, decay: float = PUBLISHED_DECAY) -> None:
        super().__init__()
        self.decay = decay
        self.updates = 0
        # use_buffers=False: buffers (none in EMRDM) are copied, not averaged.
        self.averaged = AveragedModel(model, avg_fn=self._average, use_buffers=False)
        self.averaged.requires_grad_(False)

    def _average(
        self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor
    ) -> torch.Tensor:
        beta = decay_at(self.updates, self.decay)
        return beta * averaged + (1.0 - beta) * current

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        self.averaged.update_parameters(model.module if hasattr(model, "module") else model)
        self.updates += 1

    @property
    def model(self) -> nn.Module:
        """The averaged model itself (not the ``AveragedModel`` wrapper)."""
        return self.averaged.module
