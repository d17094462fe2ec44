"""Which methods exist and what each output needs: importable without torch.

The workflow reads this registry while Snakemake parses the rules (the ``evaluate`` wildcard,
each checkpoint a method needs, each checkpoint a figure needs), so it holds names only; the
code that runs a method is in :mod:`tdpcr.evaluation.protocols`.

A method names the trained variants it runs and how they are wired:

==========================  ==========================  ===================================
method                      cloud-free image from       land-cover map from
==========================  ==========================  ===================================
cloudy-input                the cloudy input (no-op)    -
dsen2cr, glfcr, hpncr,      that variant                -
emrdm, tdpcr-cr
tdpcr-full (and ablations), that variant                the same variant's head (multi-task)
cloudseg
segformer-clear/-cloudy/    -                           that SegFormer on its own input
-sar                                                    (direct: clear / cloudy S2, or S1)
<cr>+segformer-clear        the CR model (not scored)   segformer-clear on the CR model's
                                                        output (multi-stage), for DSen2-CR,
                                                        GLF-CR, HPN-CR, EMRDM, TDP-CR CR-only
==========================  ==========================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tdpcr.core.errors import InputDataError
from tdpcr.training.variants import VARIANTS, get_variant

#: The reconstruction baselines of Table I (variant = method name, label), in table order.
RECONSTRUCTION_BASELINES: tuple[tuple[str, str], ...] = (
    ("dsen2cr", "DSen2-CR"),
    ("glfcr", "GLF-CR"),
    ("hpncr", "HPN-CR"),
    ("emrdm", "EMRDM"),
)

#: Where a method's land-cover map comes from (see the module docstring).
SegSource = Literal["input", "cr_output", "head"]


@dataclass(frozen=True)
class Method:
    """One evaluated method (a row, or part of a row, of the paper's tables).

    Attributes:
        name: method name (Snakemake wildcard, ``results/eval/<name>.json``).
        label: name shown in tables and figures.
        cr_variant: variant that removes clouds (None: no model; the cloudy input is the
            "prediction" when ``scores_cr`` is set).
        seg_variant: variant whose weights produce the land-cover map (None: no map).
        seg_source: what the segmentation reads: ``input`` (the segmenter's own store input),
            ``cr_output`` (the cloud-free image of ``cr_variant``), ``head`` (the head of
            ``cr_variant`` itself, multi-task).
        scores_cr: whether PSNR / SSIM of the cloud-free image are scored.
    """

    name: str
    label: str
    cr_variant: str | None = None
    seg_variant: str | None = None
    seg_source: SegSource | None = None
    scores_cr: bool = False

    @property
    def variants(self) -> tuple[str, ...]:
        """Trained variants the method needs, CR model first, without repeats."""
        names = [v for v in (self.cr_variant, self.seg_variant) if v is not None]
        return tuple(dict.fromkeys(names))

    @property
    def scores_seg(self) -> bool:
        """Whether PA / mIoU are scored."""
        return self.seg_variant is not None

    @property
    def metric_prefix(self) -> str:
        """Prefix of the method's metrics in MLflow.

        ``test/`` when the method evaluates one variant on its own (``test/psnr``); a
        multi-stage method logs under its own name instead (``test/dsen2cr_then_segformer-
        clear/miou``, MLflow refuses ``+``), so it never overwrites a variant's direct scores.
        """
        if self.name in VARIANTS:
            return "test/"
        return f"test/{self.name.replace('+', '_then_')}/"

    def pieces(self) -> tuple[str, ...]:
        """Store pieces a batch needs (``cloudmask`` is added when the store has it)."""
        needed: list[str] = []
        if self.cr_variant is not None or self.scores_cr:
            needed.append("s2_cloudy")
        if self.cr_variant is not None:
            needed.append("s1")
        if self.scores_cr:
            needed.append("s2_clear")
        if self.seg_variant is not None:
            needed.append("landcover")
            if self.seg_source == "input":
                needed.append(get_variant(self.seg_variant).seg_input or "s2_clear")
        return tuple(dict.fromkeys(needed))


def _methods() -> list[Method]:
    methods = [Method("cloudy-input", "Cloudy input", scores_cr=True)]
    methods += [
        Method(name, label, cr_variant=name, scores_cr=True)
        for name, label in RECONSTRUCTION_BASELINES
    ]
    for prefix, label in (
        ("tdpcr", "TDP-CR"),
        ("tdpcr-global", "TDP-CR PGF global only"),
        ("tdpcr-local", "TDP-CR PGF local only"),
    ):
        methods.append(Method(f"{prefix}-cr", f"{label} (CR-only)", f"{prefix}-cr", scores_cr=True))
        methods.append(
            Method(
                f"{prefix}-full",
                f"{label} (Full)",
                f"{prefix}-full",
                f"{prefix}-full",
                "head",
                scores_cr=True,
            )
        )
    methods += [
        Method(
            "tdpcr-joint",
            "TDP-CR joint training",
            "tdpcr-joint",
            "tdpcr-joint",
            "head",
            scores_cr=True,
        ),
        Method(
            "tdpcr-fpft",
            "TDP-CR phase 1 + FPFT",
            "tdpcr-fpft",
            "tdpcr-fpft",
            "head",
            scores_cr=True,
        ),
        Method("cloudseg", "CloudSeg", "cloudseg", "cloudseg", "head", scores_cr=True),
        Method(
            "segformer-clear",
            "SegFormer on clear optical",
            seg_variant="segformer-clear",
            seg_source="input",
        ),
        Method(
            "segformer-cloudy",
            "SegFormer on cloudy optical",
            seg_variant="segformer-cloudy",
            seg_source="input",
        ),
        Method(
            "segformer-sar", "SegFormer on SAR", seg_variant="segformer-sar", seg_source="input"
        ),
        *(
            Method(
                f"{name}+segformer-clear",
                f"{label} -> SegFormer",
                name,
                "segformer-clear",
                "cr_output",
            )  # fmt: skip
            for name, label in RECONSTRUCTION_BASELINES
        ),
        Method(
            "tdpcr-cr+segformer-clear",
            "TDP-CR (CR-only) -> SegFormer",
            "tdpcr-cr",
            "segformer-clear",
            "cr_output",
        ),
    ]
    return methods


#: Every evaluable method by name.
METHODS: dict[str, Method] = {m.name: m for m in _methods()}


def get_method(name: str) -> Method:
    """The method called ``name``; InputDataError listing the known ones otherwise."""
    if name not in METHODS:
        raise InputDataError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


#: Figure 3 compares these cloud-removal methods (column title, method name). Both TDP-CR
#: phases are shown: phase 2 retrains the PGF for segmentation, which moves the reconstruction.
FIG3_METHODS: tuple[tuple[str, str], ...] = (
    *((label, name) for name, label in RECONSTRUCTION_BASELINES),
    ("CloudSeg", "cloudseg"),
    ("TDP-CR CR-only", "tdpcr-cr"),
    ("TDP-CR Full", "tdpcr-full"),
)
#: TDP-CR methods whose PGF weights are measured (tdpcr.evaluation.pgf) and whose outputs
#: are grid-checked (tdpcr.evaluation.spectrum): both phases of the full PGF and the Full
#: variants of the two branch ablations. The global-only one is the PGF measure's control.
PGF_METHODS: tuple[str, ...] = ("tdpcr-cr", "tdpcr-full", "tdpcr-global-full", "tdpcr-local-full")
#: The PGF method whose SAR weight cannot vary within a patch (one logit pair per channel).
PGF_CONTROL = "tdpcr-global-full"
#: Figure 4 shows the prompt of this variant.
FIG4_VARIANT = "tdpcr-full"
#: Figure 5: one land-cover map per protocol of Table II (column title, method name).
FIG5_METHODS: tuple[tuple[str, str], ...] = (
    ("Direct: clear", "segformer-clear"),
    ("Direct: cloudy", "segformer-cloudy"),
    ("Direct: SAR", "segformer-sar"),
    ("DSen2-CR -> SegFormer", "dsen2cr+segformer-clear"),
    ("TDP-CR CR -> SegFormer", "tdpcr-cr+segformer-clear"),
    ("Multi-task: CloudSeg", "cloudseg"),
    ("Multi-task: TDP-CR", "tdpcr-full"),
)


def figure_variants() -> tuple[str, ...]:
    """Trained variants :func:`make_figures` needs (the figures rule's inputs)."""
    names = [get_method(m).variants for _, m in (*FIG3_METHODS, *FIG5_METHODS)]
    return tuple(dict.fromkeys([*(v for group in names for v in group), FIG4_VARIANT]))
