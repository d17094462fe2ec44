"""Training: variants, trainer, losses and checkpoints."""
