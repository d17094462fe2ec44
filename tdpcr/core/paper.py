"""What the TDP-CR paper reports (arXiv 2601.12052), for the ``paper_*`` columns only.

Copied from the project notes (``docs/model.md``: "The paper's reported accuracy", Tables I-III
and the parameter / FLOP counts), measured by the paper on the LuojiaSET-OSFCR test split at
256 x 256. These numbers are never mixed with ours: tables put them in columns prefixed
``paper_`` and claims in ``paper_difference``; nothing else reads them. The paper prints mIoU
and PA in percent; here they are fractions, the unit of our own columns.
"""

from __future__ import annotations

#: (params in M, "FLOPs" in G at one 256x256 sample) as the paper's Table I prints them; for
#: the baselines the paper's "FLOPs" are multiply-accumulates (see the complexity report).
PAPER_COMPLEXITY: dict[str, tuple[float, float]] = {
    "tdpcr-cr": (5.92, 34.3),
    "tdpcr-full": (5.95, 38.2),
    "dsen2cr": (18.95, 1241.2),
    "glf-cr": (14.83, 249.7),
    "hpn-cr": (3.69, 19.6),
    "emrdm": (39.13, 83.6),
    "cloudseg": (203.22, 105.9),
}
#: Remarks on a paper row.
PAPER_REMARKS: dict[str, str] = {"emrdm": "FLOPs per sampling step"}

#: Table I (cloud removal): row key -> PSNR (dB), SSIM.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "dsen2cr": {"psnr": 28.52, "ssim": 0.885},
    "glf-cr": {"psnr": 29.35, "ssim": 0.896},
    "hpn-cr": {"psnr": 31.05, "ssim": 0.908},
    "emrdm": {"psnr": 32.92, "ssim": 0.925},
    "tdpcr-cr": {"psnr": 32.41, "ssim": 0.922},
    "cloudseg": {"psnr": 32.07, "ssim": 0.919},
    "tdpcr-full": {"psnr": 33.10, "ssim": 0.925},
}
#: Table II (land cover): row key -> mIoU, PA (fractions of the paper's percent).
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "segformer-clear": {"miou": 0.721, "pa": 0.876},
    "segformer-cloudy": {"miou": 0.284, "pa": 0.517},
    "segformer-sar": {"miou": 0.410, "pa": 0.658},
    "dsen2cr+segformer-clear": {"miou": 0.357, "pa": 0.602},
    "glf-cr+segformer-clear": {"miou": 0.405, "pa": 0.652},
    "hpn-cr+segformer-clear": {"miou": 0.498, "pa": 0.728},
    "emrdm+segformer-clear": {"miou": 0.592, "pa": 0.798},
    "tdpcr-cr+segformer-clear": {"miou": 0.587, "pa": 0.793},
    "cloudseg": {"miou": 0.604, "pa": 0.803},
    "tdpcr-full": {"miou": 0.618, "pa": 0.817},
}
#: Table III (ablations): row key -> PSNR, SSIM, PA, mIoU (fractions).
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "tdpcr-global-full": {"psnr": 31.85, "ssim": 0.914, "pa": 0.774, "miou": 0.568},
    "tdpcr-local-full": {"psnr": 31.17, "ssim": 0.908, "pa": 0.742, "miou": 0.525},
    "tdpcr-full": {"psnr": 33.10, "ssim": 0.925, "pa": 0.817, "miou": 0.618},
    "tdpcr-joint": {"psnr": 31.71, "ssim": 0.912, "pa": 0.765, "miou": 0.551},
    "tdpcr-fpft": {"psnr": 32.28, "ssim": 0.917, "pa": 0.805, "miou": 0.601},
}
#: Every table's paper values by table name.
PAPER_TABLES: dict[str, dict[str, dict[str, float]]] = {
    "table1": PAPER_TABLE1,
    "table2": PAPER_TABLE2,
    "table3": PAPER_TABLE3,
}
