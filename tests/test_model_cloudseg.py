"""CloudSeg baseline: shapes, paper-size parameter count, teacher and student steps, losses."""

from __future__ import annotations

import pytest
import torch

from tdpcr.core.specs import (
    CLOUDMASK_CLEAR,
    CLOUDMASK_CLOUD,
    CLOUDMASK_SHADOW,
    CLOUDMASK_UNKNOWN,
    IGNORE_INDEX,
)
from tdpcr.models.cloudseg import CloudSeg
from tdpcr.models.registry import create_model, parameter_count
from tdpcr.training.cloudseg_losses import (
    charbonnier_cloud_weighted,
    cloudseg_student_loss,
    masked_distillation,
)
from tdpcr.training.losses import segmentation_loss

#: A tiny CloudSeg with the paper's structure (four MiT stages, five decoder blocks).
TINY = {
    "num_classes": 5,
    "hidden_sizes": [8, 16, 24, 32],
    "depths": [1, 1, 1, 1],
    "num_attention_heads": [1, 1, 1, 2],
    "decoder_channels": [16, 8, 8, 8, 4],
    "cr_hidden": 8,
}
#: Parameters the published network builds but never runs (13 bands, paper size).
PAPER_UNUSED = 6_608_844


def _inputs(b: int = 2, h: int = 64, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(b, 13, h, w), torch.rand(b, 2, h, w)


def _mask(b: int, h: int, w: int, value: int) -> torch.Tensor:
    return torch.full((b, h, w), value, dtype=torch.uint8)


# --------------------------------------------------------------------------- model


def test_output_shapes_at_64() -> None:
    torch.manual_seed(0)
    model = create_model("cloudseg", **TINY)
    out = model(*_inputs(2, 64, 64))
    assert out["image"].shape == (2, 13, 64, 64)
    assert out["logits"].shape == (2, 5, 64, 64)
    assert out["features"].shape == (2, 4, 64, 64)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_output_shapes_at_256_and_non_square() -> None:
    model = CloudSeg(**TINY, keep_unused=False).eval()
    with torch.no_grad():
        assert model(*_inputs(1, 256, 256))["image"].shape == (1, 13, 256, 256)
        assert model(*_inputs(1, 64, 96))["logits"].shape == (1, 5, 64, 96)


def test_refuses_sizes_not_divisible_by_32() -> None:
    model = CloudSeg(**TINY, keep_unused=False)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(*_inputs(1, 48, 64))


def test_paper_size_parameter_count() -> None:
    """MiT-B4 streams and the paper's decoder: 203,249,167 with 13 bands (within 0.02 % of
    Table I's 203.22 M, which counts the published 4-band model: exactly 203,215,750)."""
    paper = {"in_optical": 13, "num_classes": 6}
    n = parameter_count("cloudseg", paper)
    assert abs(n / 203.22e6 - 1) < 0.005, n
    assert n == 203_249_167
    assert parameter_count("cloudseg", {**paper, "in_optical": 4}) == 203_215_750
    lean = parameter_count("cloudseg", {**paper, "keep_unused": False})
    assert n - lean == PAPER_UNUSED


def test_unused_modules_are_frozen_and_do_not_change_outputs() -> None:
    torch.manual_seed(0)
    full = CloudSeg(**TINY).eval()
    lean = CloudSeg(**TINY, keep_unused=False).eval()
    assert full.unused is not None
    assert not any(p.requires_grad for p in full.unused.parameters())
    missing = lean.load_state_dict(full.state_dict(), strict=False)
    assert missing.missing_keys == []
    assert all(k.startswith("unused.") for k in missing.unexpected_keys)
    optical, sar = _inputs(1, 64, 64)
    with torch.no_grad():
        a, b = full(optical, sar), lean(optical, sar)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- training


def _batch(b: int = 2, s: int = 64) -> dict[str, torch.Tensor]:
    labels = torch.randint(0, 5, (b, s, s))
    labels[:, :4] = IGNORE_INDEX
    cloudmask = torch.randint(0, 3, (b, s, s)).to(torch.uint8)
    cloudmask[-1] = CLOUDMASK_UNKNOWN  # one patch without a mask
    optical, sar = _inputs(b, s, s)
    return {
        "s2_cloudy": optical,
        "s2_clear": torch.rand(b, 13, s, s),
        "s1": sar,
        "landcover": labels,
        "cloudmask": cloudmask,
    }


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_teacher_step_then_student_step_with_frozen_teacher() -> None:
    torch.manual_seed(0)
    batch = _batch()
    teacher = create_model("cloudseg", **TINY)
    opt_t = torch.optim.AdamW(teacher.parameters(), lr=1e-3)
    out = teacher(batch["s2_clear"], batch["s1"])  # the teacher sees the cloud-free image
    loss, _ = segmentation_loss(out["logits"], batch["landcover"], label_smoothing=0.0)
    assert torch.isfinite(loss)
    loss.backward()
    opt_t.step()
    opt_t.zero_grad(set_to_none=True)

    teacher.eval().requires_grad_(False)
    frozen = _snapshot(teacher)
    student = create_model("cloudseg", **TINY)
    before = _snapshot(student)
    opt_s = torch.optim.AdamW((p for p in student.parameters() if p.requires_grad), lr=1e-3)
    teacher_features = teacher(batch["s2_clear"], batch["s1"])["features"]
    loss, parts = cloudseg_student_loss(
        student(batch["s2_cloudy"], batch["s1"]), teacher_features, batch
    )
    assert torch.isfinite(loss) and set(parts) == {"ce", "charbonnier", "kd"}
    assert parts["kd"] > 0
    loss.backward()
    opt_s.step()

    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    # every module the student runs gets a gradient; the frozen `unused` ones none
    for name, p in student.named_parameters():
        assert (p.grad is None) == name.startswith("unused."), name
    assert not torch.equal(student.state_dict()["seg_head.weight"], before["seg_head.weight"])
    assert not torch.equal(student.state_dict()["cr_head.1.weight"], before["cr_head.1.weight"])
    proj = "opt_encoder.0.patch_embeddings.proj.weight"
    assert not torch.equal(student.state_dict()[proj], before[proj])


# --------------------------------------------------------------------------- losses


def test_charbonnier_weights_as_published() -> None:
    pred, target = torch.zeros(1, 13, 2, 2), torch.full((1, 13, 2, 2), 0.1)
    mask = torch.tensor([[[CLOUDMASK_CLEAR, CLOUDMASK_CLOUD], [CLOUDMASK_SHADOW, 255]]])
    base = (0.1**2 + 1e-6) ** 0.45
    # weights 1 (clear), 6 (cloud), 6 (shadow), 1 (unknown), averaged over the 4 pixels
    got = charbonnier_cloud_weighted(pred, target, mask.to(torch.uint8))
    assert got.item() == pytest.approx(base * (1 + 6 + 6 + 1) / 4, rel=1e-6)
    assert charbonnier_cloud_weighted(pred, target, None).item() == pytest.approx(base, rel=1e-6)
    unknown = _mask(1, 2, 2, CLOUDMASK_UNKNOWN)
    assert charbonnier_cloud_weighted(pred, target, unknown).item() == pytest.approx(base)


def test_distillation_zero_on_cloudy_pixels_and_without_mask() -> None:
    teacher = torch.rand(2, 4, 8, 8)
    mask = _mask(2, 8, 8, CLOUDMASK_CLEAR)
    mask[:, :4] = CLOUDMASK_CLOUD
    mask[:, 4:6] = CLOUDMASK_SHADOW
    student = teacher.clone()
    student[:, :, :6] += 1.0  # differs only where the mask says cloud or shadow
    student.requires_grad_(True)
    loss = masked_distillation(student, teacher, mask)
    assert loss.item() == 0.0
    loss.backward()
    assert student.grad is not None and not student.grad.any()

    clear_diff = teacher.clone()
    clear_diff[:, :, 6:] += 1.0  # 2 clear rows of 8: mean over all pixels = 2 / 8
    assert masked_distillation(clear_diff, teacher, mask).item() == pytest.approx(0.25)
    for no_mask in (_mask(2, 8, 8, CLOUDMASK_UNKNOWN), None):
        value = masked_distillation(clear_diff, teacher, no_mask)
        assert value.item() == 0.0 and not torch.isnan(value)


def test_distillation_mask_resized_to_feature_grid() -> None:
    """Features at half the mask's resolution: a cell is clear only if all 4 pixels are."""
    teacher = torch.zeros(1, 1, 2, 2)
    mask = _mask(1, 4, 4, CLOUDMASK_CLEAR)
    mask[0, 0, 0] = CLOUDMASK_CLOUD  # one cloudy pixel in the top-left cell
    student = torch.ones(1, 1, 2, 2)
    assert masked_distillation(student, teacher, mask).item() == pytest.approx(3 / 4)


def test_patch_without_mask_keeps_its_weight() -> None:
    """A patch with no mask still trains CE and reconstruction at full weight; a batch without
    a cloudmask entry trains with plain Charbonnier and no distillation."""
    torch.manual_seed(0)
    b, s = 2, 32
    image = torch.rand(b, 13, s, s, requires_grad=True)
    out = {
        "image": image,
        "logits": torch.randn(b, 5, s, s, requires_grad=True),
        "features": torch.rand(b, 4, s, s, requires_grad=True),
    }
    batch = {
        "s2_clear": torch.rand(b, 13, s, s),
        "landcover": torch.randint(0, 5, (b, s, s)),
        "cloudmask": torch.stack([_mask(1, s, s, CLOUDMASK_CLEAR)[0], _mask(1, s, s, 255)[0]]),
    }
    loss, parts = cloudseg_student_loss(out, torch.zeros(b, 4, s, s), batch)
    loss.backward()
    assert out["features"].grad is not None and image.grad is not None
    assert out["features"].grad[0].abs().sum() > 0 and not out["features"].grad[1].any()
    assert image.grad[1].abs().sum() > 0 and out["logits"].grad is not None
    assert out["logits"].grad[1].abs().sum() > 0
    assert parts["kd"] > 0

    no_mask = {k: v for k, v in batch.items() if k != "cloudmask"}
    loss, parts = cloudseg_student_loss(out, torch.zeros(b, 4, s, s), no_mask)
    assert torch.isfinite(loss) and parts["kd"] == 0.0
    plain = charbonnier_cloud_weighted(image.detach(), batch["s2_clear"], None)
    assert parts["charbonnier"] == pytest.approx(plain.item())
