"""What a run says about itself in the MLflow UI: experiment kind, source, code version, system.

- **Experiment kind.** MLflow 3.17's UI opens an experiment on its GenAI overview ("Traces")
  unless the experiment tag ``mlflow.experimentKind`` says otherwise. The UI's own enum
  (``ExperimentKind`` in ``mlflow/server/js/src/experiment-tracking/constants.ts``; the same
  strings are in the installed bundle ``mlflow/server/js/build/static/js/main.*.js``) has
  ``custom_model_development`` for classic training; with it the experiment opens on its runs.
- **Source and version.** The runs table's *Source* column shows the base name of
  ``mlflow.source.name`` (for ``mlflow.source.type`` ``LOCAL``) and its *Version* column the
  ``mlflow.source.git.commit`` tag (the tag names the UI reads: ``Utils.sourceNameTag`` and
  ``Utils.gitCommitTag`` of the same bundle). MLflow's own default would be ``sys.argv[0]``,
  the ``tdpcr`` console script outside any checkout, which names neither the command nor the
  code; we record the ``tdpcr`` sub-command and the commit of the checkout tdpcr runs from.
- **System metrics.** MLflow's :class:`SystemMetricsMonitor` samples CPU, memory, disk and
  network (and NVIDIA GPUs when ``nvidia-ml-py`` is installed, see envs/requirements-cuda.txt)
  into ``system/*`` metrics of the run, every 10 s unless
  ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` says otherwise.
"""

from __future__ import annotations

import getpass
import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tdpcr import __version__

log = logging.getLogger(__name__)

#: Experiment tag and value that make the MLflow 3 UI open an experiment on its training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

#: Folder of the tdpcr package; its git checkout (if any) is the code version of a run.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    """Output of ``git args`` in the package's checkout; empty outside one or without git."""
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=_PACKAGE_DIR
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_commit() -> str:
    """The checkout's commit (``unknown`` outside a git checkout, e.g. a wheel install)."""
    return _git("rev-parse", "HEAD") or "unknown"


def source_tags(command: str) -> dict[str, str]:
    """The ``mlflow.source.*`` / ``mlflow.user`` tags of a run started by ``tdpcr command``.

    Git tags are set only inside a checkout (a wheel install records ``tdpcr.version`` only),
    so the UI shows "-" rather than a made-up commit. ``tdpcr.git_dirty`` says whether tracked
    files differed from the commit.
    """
    tags = {
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": f"tdpcr {command}",
        "tdpcr.version": __version__,
    }
    with suppress(KeyError, OSError):  # no passwd entry (some containers): no user tag
        tags["mlflow.user"] = getpass.getuser()
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["tdpcr.git_dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        remote = _git("config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
    return tags


@contextmanager
def system_metrics(enabled: bool, run_id: str, uri: str) -> Iterator[None]:
    """Sample system metrics into ``run_id`` while the body runs (nothing when disabled)."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # MLflow says at INFO level that it starts, stops and skips GPU metrics on machines
    # without one; training logs only need the metrics themselves.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    monitor = SystemMetricsMonitor(run_id, tracking_uri=uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
