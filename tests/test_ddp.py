"""Data-parallel training on the CPU: ``torchrun --nproc_per_node 2`` with gloo, tiny config.

The only multi-process training check this project can run without GPUs. What must hold:

* after the run both ranks hold bit-identical weights (each prints the SHA-256 of its own
  weights; the trainer raises if they differ), and the saved checkpoint is those weights;
* the relation to one process: rank r takes every 2nd sample (and its augmentation seed) of
  the seeded epoch order, so step s of 2 ranks at batch b sees exactly the samples, crops and
  flips of step s of one process at batch 2b; the loss (L1 + SSIM, means over equal-sized
  per-rank batches) averaged by DDP's all-reduce is then the one-process loss, and the weights
  agree up to float summation order (1 thread per rank vs 2 in one process): within 1e-5 here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from tdpcr.core.checkpoint import load_checkpoint, weights_digest
from tdpcr.data.dataset import ResumableSampler
from tdpcr.models import create_model_from
from tests.conftest import REPO

STEPS = 3
BATCH_PER_RANK = 2
#: torchrun of this interpreter (the `torchrun` script is `python -m torch.distributed.run`).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _config(tmp: Path, batch_size: int) -> Path:
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["tracking"]["enabled"] = False
    config["train"].update(
        crop=32, batch_size=batch_size, val_batch_size=4, val_every=STEPS, val_max_batches=1,
        steps={"phase1": STEPS, "phase2": 1},
    )  # fmt: skip
    path = tmp / f"config-b{batch_size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _train(command: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return create_model_from(load_checkpoint(folder)).state_dict()


def test_sampler_ranks_split_one_doubled_batch() -> None:
    """The exact relation the DDP test relies on, sample by sample."""
    size, batch, world = 37, 3, 2
    single = list(ResumableSampler(size, batch * world, seed=5))
    ranks = [list(ResumableSampler(size, batch, seed=5, rank=r, world=world)) for r in range(2)]
    steps = len(single) // (batch * world)
    for step in range(steps):
        together = {pair for r in ranks for pair in r[step * batch : (step + 1) * batch]}
        assert together == set(single[step * batch * world : (step + 1) * batch * world])


def test_two_process_ddp_matches_one_process_at_the_doubled_batch(
    scene_store: Path, tmp_path: Path
) -> None:
    train = ["tdpcr", "train", "--variant", "tdpcr-cr", "--store", str(scene_store), "--quiet"]
    ddp = _train(
        [*TORCHRUN, "--standalone", "--nproc_per_node", "2", "--no-python", *train,
         "--config", str(_config(tmp_path, BATCH_PER_RANK)), "--out", str(tmp_path / "ddp"),
         "--threads", "2"],
        tmp_path,
    )  # fmt: skip
    _train(
        [*train, "--config", str(_config(tmp_path, 2 * BATCH_PER_RANK)), "--out",
         str(tmp_path / "single"), "--threads", "2"],
        tmp_path,
    )  # fmt: skip

    # Both ranks report their own weights; they agree, and the checkpoint holds them.
    reported = dict(re.findall(r"rank (\d)/2: weights sha256 ([0-9a-f]{64})", ddp.stdout))
    assert sorted(reported) == ["0", "1"], ddp.stdout[-2000:]
    assert reported["0"] == reported["1"]
    saved = create_model_from(load_checkpoint(tmp_path / "ddp" / "last"))
    assert weights_digest(saved) == reported["0"]

    # One process at the doubled batch: the same samples, so the same weights up to rounding.
    ddp_w, single_w = _weights(tmp_path / "ddp" / "last"), _weights(tmp_path / "single" / "last")
    start = _weights_at_init(tmp_path)
    moved = max((single_w[k] - start[k]).abs().max().item() for k in single_w)
    worst = max((ddp_w[k] - single_w[k]).abs().max().item() for k in single_w)
    assert moved > 1e-3  # training changed the weights, so agreeing means something
    assert worst <= 1e-5, worst


def _weights_at_init(tmp_path: Path) -> dict[str, torch.Tensor]:
    """The seeded initial weights of both runs (the trainer seeds before building)."""
    from tdpcr.core.config import load_config
    from tdpcr.core.specs import CLASS_NAMES
    from tdpcr.models import create_model
    from tdpcr.training.variants import get_variant, model_kwargs

    config = load_config(_config(tmp_path, BATCH_PER_RANK))
    torch.manual_seed(int(config["train"]["seed"]))
    variant = get_variant("tdpcr-cr")
    kwargs = model_kwargs(variant, config["models"], len(CLASS_NAMES))
    return create_model("tdpcr", **kwargs).state_dict()
