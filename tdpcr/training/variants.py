"""Every trained model of the paper's tables, as one declarative list.

One code path trains them all (:mod:`tdpcr.training.trainer`); a variant only says which model,
which inputs and losses, which parameters train, and which variant initialises it.

========================  ==========  =================  ============  ====================
variant                   model       losses             trains        initialised from      steps
========================  ==========  =================  ============  ====================  =====
tdpcr-cr                  tdpcr       rec                reconstruction  (phase 1)            N
tdpcr-full                tdpcr+head  rec + seg          peft          tdpcr-cr (phase 2)    N + M
tdpcr-global-cr / -full   PGF global  as above           as above      tdpcr-global-cr       same
tdpcr-local-cr / -full    PGF local   as above           as above      tdpcr-local-cr        same
tdpcr-joint               tdpcr+head  rec + seg          fpft          scratch (one phase)   N + M
tdpcr-fpft                tdpcr+head  rec + seg          fpft          tdpcr-cr              N + M
dsen2cr                   dsen2cr     rec                all           scratch               N
segformer-clear/-cloudy   segformer   seg                all           scratch               N
segformer-sar             segformer   seg (on S1)        all           scratch               N
========================  ==========  =================  ============  ====================  =====

N and M are ``train.steps.phase1`` and ``train.steps.phase2`` (:func:`step_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tdpcr.core.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    """How one model of the tables is trained.

    Attributes:
        name: variant name (Snakemake wildcard, MLflow run name, results/models/<name>/).
        model: registry name of the architecture.
        phase: ``1`` reconstruction phase, ``2`` task phase, ``0`` single-phase training.
        reconstruction: the loss has the L1 + SSIM reconstruction term.
        segmentation: the loss has the cross-entropy term (the model has a class head).
        strategy: TDP-CR parameter groups that train (``reconstruction``, ``peft``, ``fpft``);
            ``None`` trains every parameter (baselines).
        init_from: variant whose checkpoint initialises this one.
        pgf_mode: ``both``, ``global`` or ``local`` (TDP-CR only).
        seg_input: store piece a segmenter reads (``s2_clear``, ``s2_cloudy``, ``s1``).
        steps_key: the ``train.steps`` entry its own run trains for: ``phase1`` (N, a complete
            single-task training), ``phase2`` (M, the task phase after a phase-1 checkpoint)
            or ``total`` (N + M, a multi-task model trained in one run; see
            :func:`step_budget`).
        description: one line for tables and MLflow.
    """

    name: str
    model: str
    phase: int
    reconstruction: bool
    segmentation: bool
    strategy: str | None = None
    init_from: str | None = None
    pgf_mode: str = "both"
    seg_input: str | None = None
    steps_key: str = "phase1"
    description: str = ""

    @property
    def pieces(self) -> tuple[str, ...]:
        """Store pieces a training batch needs."""
        if self.model == "segformer":
            return (self.seg_input or "s2_clear", "landcover")
        pieces = ("s2_cloudy", "s2_clear", "s1")
        return (*pieces, "landcover") if self.segmentation else pieces


def _tdpcr_pair(prefix: str, mode: str, label: str) -> list[Variant]:
    """Phase 1 (cloud removal) and phase 2 (PEFT from phase 1) of one PGF configuration."""
    return [
        Variant(
            name=f"{prefix}-cr",
            model="tdpcr",
            phase=1,
            reconstruction=True,
            segmentation=False,
            strategy="reconstruction",
            pgf_mode=mode,
            steps_key="phase1",
            description=f"TDP-CR {label}, phase 1 (cloud removal)",
        ),
        Variant(
            name=f"{prefix}-full",
            model="tdpcr",
            phase=2,
            reconstruction=True,
            segmentation=True,
            strategy="peft",
            init_from=f"{prefix}-cr",
            pgf_mode=mode,
            steps_key="phase2",
            description=f"TDP-CR {label}, phase 1 + PEFT",
        ),
    ]


def _segformer(name: str, seg_input: str, label: str) -> Variant:
    """A Direct-protocol segmenter trained from scratch on one store piece."""
    return Variant(
        name=name,
        model="segformer",
        phase=0,
        reconstruction=False,
        segmentation=True,
        seg_input=seg_input,
        steps_key="phase1",
        description=f"SegFormer on {label}",
    )


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        *_tdpcr_pair("tdpcr", "both", "PGF global + local"),
        *_tdpcr_pair("tdpcr-global", "global", "PGF global only"),
        *_tdpcr_pair("tdpcr-local", "local", "PGF local only"),
        Variant(
            name="tdpcr-joint",
            model="tdpcr",
            phase=0,
            reconstruction=True,
            segmentation=True,
            strategy="fpft",
            steps_key="total",
            description="TDP-CR joint training from scratch",
        ),
        Variant(
            name="tdpcr-fpft",
            model="tdpcr",
            phase=2,
            reconstruction=True,
            segmentation=True,
            strategy="fpft",
            init_from="tdpcr-cr",
            steps_key="phase2",
            description="TDP-CR phase 1 + full-parameter fine-tuning",
        ),
        Variant(
            name="dsen2cr",
            model="dsen2cr",
            phase=0,
            reconstruction=True,
            segmentation=False,
            steps_key="phase1",
            description="DSen2-CR (SAR-optical cloud removal baseline)",
        ),
        _segformer("segformer-clear", "s2_clear", "cloud-free optical"),
        _segformer("segformer-cloudy", "s2_cloudy", "cloudy optical"),
        _segformer("segformer-sar", "s1", "SAR"),
    ]
}


def step_budget(variant: Variant, steps: dict) -> int:
    """Optimizer steps of ``variant``'s own run under the config's ``train.steps``.

    The fairness rule of every table counts steps per kind of training, on the same batch and
    crop, from random initialisation (:func:`steps_from_scratch`):

    * a complete single-task training gets N = ``phase1`` steps: TDP-CR's phase 1 (the CR-only
      rows and the PGF ablations' phase 1), DSen2-CR and each SegFormer;
    * a multi-task model gets N + M (M = ``phase2``): TDP-CR Full and FPFT are a completed
      phase 1 (N) fine-tuned for M steps; joint training runs N + M steps from scratch.

    So CR-only meets the reconstruction baselines at N steps each, as the paper compares a
    completed phase 1 with completed baselines, and the multi-task rows meet at N + M.
    """
    if variant.steps_key == "total":
        return int(steps["phase1"]) + int(steps["phase2"])
    return int(steps[variant.steps_key])


def steps_from_scratch(variant: Variant, steps: dict) -> int:
    """Optimizer steps behind ``variant``'s weights from random initialisation.

    Its own run's :func:`step_budget` plus those of the checkpoints it starts from.
    """
    parent = VARIANTS[variant.init_from] if variant.init_from else None
    own = step_budget(variant, steps)
    return own + (steps_from_scratch(parent, steps) if parent else 0)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; ConfigError listing the known ones otherwise."""
    if name not in VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def model_kwargs(variant: Variant, models_config: dict, num_classes: int) -> dict:
    """Constructor kwargs of ``variant``'s model from the config's ``models`` section."""
    if variant.model not in models_config:
        raise ConfigError(f"config key 'models.{variant.model}' missing")
    kwargs = dict(models_config[variant.model])
    if variant.model == "tdpcr":
        kwargs["pgf_mode"] = variant.pgf_mode
        kwargs["num_classes"] = num_classes if variant.segmentation else None
    elif variant.model == "segformer":
        kwargs["in_channels"] = 2 if variant.seg_input == "s1" else 13
        kwargs["num_classes"] = num_classes
    return kwargs
