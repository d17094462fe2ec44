"""What the TDP-CR paper reports (arXiv 2601.12052), for the ``paper_*`` columns only.

Copied from the project notes (``docs/model.md``: "The paper's reported accuracy", Tables I-III
and the parameter / FLOP counts). These numbers are never mixed with ours: tables put them in
columns prefixed ``paper_`` and nothing else reads them.
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
