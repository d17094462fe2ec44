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
glfcr                     glfcr       L1 (published)     all           scratch               N
hpncr                     hpncr       SmoothL1+MS-SSIM   all           scratch               N
                                      +SAM (published)
emrdm                     emrdm       EDM-weighted L2    all (EMA)     scratch               N
cloudseg-teacher          cloudseg    CE (clear S2+S1)   all           scratch               M
cloudseg                  cloudseg    seg + rec + KD     all           scratch, frozen       N
                                                                       cloudseg-teacher
segformer-clear/-cloudy   segformer   seg                all           scratch               N
segformer-sar             segformer   seg (on S1)        all           scratch               N
========================  ==========  =================  ============  ====================  =====

N and M are ``train.steps.phase1`` and ``train.steps.phase2`` (:func:`step_budget`). CloudSeg is
a multi-task model, so it gets N + M in all: its teacher trains M steps and its student N (the
student, the evaluated model, learns both tasks and gets the larger share, as TDP-CR's phase 1
does; the teacher only segments, like the task phase).
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
        loss: the training objective (:func:`tdpcr.training.steps.compute_loss`): ``tdpcr``
            (L1 + SSIM and / or cross-entropy, the project's), or a baseline's published one:
            ``l1`` (GLF-CR), ``hpncr`` (HPN-CR), ``edm`` (EMRDM's diffusion loss, computed by
            the model), ``cloudseg`` (CloudSeg's student: CE + cloud-weighted Charbonnier +
            distillation from ``teacher``), ``cloudseg-teacher`` (its teacher's plain CE).
        optical_input: store piece the model reads as its optical input (the CloudSeg
            teacher reads the cloud-free image).
        teacher: a frozen variant whose features the student distils (CloudSeg).
        ema: evaluate and publish an exponential moving average of the weights (EMRDM).
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
    loss: str = "tdpcr"
    optical_input: str = "s2_cloudy"
    teacher: str | None = None
    ema: bool = False

    @property
    def pieces(self) -> tuple[str, ...]:
        """Store pieces a training batch needs."""
        if self.model == "segformer":
            return (self.seg_input or "s2_clear", "landcover")
        pieces = tuple(dict.fromkeys((self.optical_input, "s2_clear", "s1")))
        if not self.reconstruction:  # the CloudSeg teacher: clear optical + SAR -> land cover
            pieces = (self.optical_input, "s1")
        return (*pieces, "landcover") if self.segmentation else pieces

    @property
    def parents(self) -> tuple[str, ...]:
        """Variants whose checkpoints this one's training reads (initialisation, teacher)."""
        return tuple(v for v in (self.init_from, self.teacher) if v is not None)


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


def _reconstruction_baseline(name: str, loss: str, description: str, ema: bool = False) -> Variant:
    """A published cloud-removal method trained from scratch with its own loss."""
    return Variant(
        name=name,
        model=name,
        phase=0,
        reconstruction=True,
        segmentation=False,
        loss=loss,
        ema=ema,
        steps_key="phase1",
        description=description,
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
        _reconstruction_baseline("glfcr", "l1", "GLF-CR (SAR-optical cloud removal baseline)"),
        _reconstruction_baseline("hpncr", "hpncr", "HPN-CR (SAR-optical cloud removal baseline)"),
        _reconstruction_baseline(
            "emrdm", "edm", "EMRDM (SAR-conditioned diffusion cloud removal baseline)", ema=True
        ),
        Variant(
            name="cloudseg-teacher",
            model="cloudseg",
            phase=1,
            reconstruction=False,
            segmentation=True,
            optical_input="s2_clear",
            loss="cloudseg-teacher",
            steps_key="phase2",
            description="CloudSeg teacher (land cover from cloud-free optical + SAR)",
        ),
        Variant(
            name="cloudseg",
            model="cloudseg",
            phase=2,
            reconstruction=True,
            segmentation=True,
            teacher="cloudseg-teacher",
            loss="cloudseg",
            steps_key="phase1",
            description="CloudSeg (multi-task baseline, student of its teacher)",
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

    Its own run's :func:`step_budget` plus those of the checkpoints it starts from or learns
    from (a distillation teacher's steps count: the student cannot exist without them).
    """
    own = step_budget(variant, steps)
    return own + sum(steps_from_scratch(VARIANTS[p], steps) for p in variant.parents)


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
    elif variant.model == "cloudseg":
        kwargs["num_classes"] = num_classes
    return kwargs
