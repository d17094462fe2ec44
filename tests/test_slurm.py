"""The workflow on a real one-node SLURM cluster, through workflow/profiles/slurm.

``tests/slurm/cluster.sh`` installs slurm-wlm and munge when missing and starts munged, slurmctld
and slurmd on this host, with two GPUs announced as a generic resource (backed by /dev/null and
/dev/zero: SLURM schedules ``--gpus=1`` and sets CUDA_VISIBLE_DEVICES, the trainer finds no usable
GPU and runs on the CPU). Two, so that two one-GPU jobs share the 2-CPU node at once, as two jobs
do under the local executor with ``--cores 2``; with one, every training and evaluation job
waited for the one before it. The tiny config then runs with
``snakemake --profile workflow/profiles/slurm``: every non-local job goes through ``sbatch``.
Needs root on Linux; skipped otherwise, or when SLURM cannot be installed here.
``pytest -m slurm -s`` runs only these and prints the wall times.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tdpcr.data.store import open_store
from tests.conftest import REPO, snakemake_command

pytestmark = pytest.mark.slurm

CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
#: Same defaults as cluster.sh; both read the same variables, so overrides reach both.
STATE_DIR = Path(os.environ.get("TDPCR_SLURM_DIR", "/tmp/tdpcr-slurm"))
PARTITION = os.environ.get("TDPCR_SLURM_PARTITION", "debug")
GPUS = int(os.environ.get("TDPCR_SLURM_GPUS", "2"))
SLURM_CONF = STATE_DIR / "slurm.conf"
#: Upper bound for one workflow run; the tiny config takes minutes, not this.
RUN_TIMEOUT_S = 3600
#: Steps (and validation interval) of the variant cancelled mid-training: long enough to
#: scancel it while it runs, after its first validation step has been logged.
PREEMPT_STEPS = 300
PREEMPT_VAL_EVERY = 10

SUBMITTED = re.compile(
    r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", re.M
)
#: A job block of Snakemake's log: "rule NAME:" / "localrule NAME:" and its indented fields.
JOB_BLOCK = re.compile(r"^(local)?rule (\w+):\n((?:    .*\n)+)", re.M)
DEVICE_LINE = re.compile(r"device: cpu \(CUDA_VISIBLE_DEVICES=([^,)]+), no usable GPU\)")
RESUMED = re.compile(r"resumed from step (\d+)")


def tiny_config() -> dict:
    """The tiny config of tests/test_workflow.py (config/tiny.yaml): every stage, minimal sizes."""
    return yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())


def write_workdir(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


def slurm_args(workdir: Path, *targets: str) -> list[str]:
    # --max-threads: rules may ask for more threads than this one node has CPUs (the default
    # train.threads is 4) and sbatch refuses such jobs; cap them at the node's size, as
    # --cores 2 does for the local executor.
    cpus = len(os.sched_getaffinity(0))
    return snakemake_command(
        workdir, "--profile", str(PROFILE), "--max-threads", str(cpus), *targets
    )


def client_env() -> dict[str, str]:
    """Environment of a user on the login node of the test cluster."""
    env = {
        k: v
        for k, v in os.environ.items()
        # Not inside some other SLURM job, no site defaults, no remote MLflow for the tiny run.
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "MLFLOW_TRACKING_URI"
    }
    env["SLURM_CONF"] = str(SLURM_CONF)
    env["TDPCR_SLURM_DIR"] = str(STATE_DIR)
    env["TDPCR_SLURM_PARTITION"] = PARTITION
    env["TDPCR_SLURM_GPUS"] = str(GPUS)
    # The profile reads the partition from SBATCH_PARTITION (its one-run override).
    env["SBATCH_PARTITION"] = PARTITION
    return env


def cannot_run_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the test SLURM cluster runs on Linux only"
    if os.geteuid() != 0:
        return "needs root: tests/slurm/cluster.sh starts munged, slurmctld and slurmd"
    if shutil.which("bash") is None:
        return "bash is missing"
    return None


@functools.cache
def workflow_rules() -> tuple[str, ...]:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


def is_training_rule(rule: str) -> bool:
    """`train`, `train_<x>`; not `training_curves`, which only plots."""
    return re.fullmatch(r"train(_\w+)?", rule) is not None


def require_training_rules() -> None:
    if not any(is_training_rule(rule) for rule in workflow_rules()):
        pytest.skip("training rules not present yet")


@dataclass
class JobRecord:
    """One Snakemake job of a run, as its log tells it."""

    rule: str
    local: bool
    wildcards: str = ""
    resources: dict[str, str] = field(default_factory=dict)
    slurm_ids: list[str] = field(default_factory=list)
    slurm_logs: list[Path] = field(default_factory=list)


@dataclass
class Run:
    workdir: Path
    returncode: int
    output: str
    wall_s: float

    @functools.cached_property
    def log_text(self) -> str:
        """Snakemake's own log of the run (the newest under .snakemake/log/)."""
        logs = sorted((self.workdir / ".snakemake" / "log").glob("*.snakemake.log"))
        assert logs, f"no Snakemake log in {self.workdir}/.snakemake/log"
        return logs[-1].read_text()

    @functools.cached_property
    def jobs(self) -> dict[int, JobRecord]:
        return parse_jobs(self.log_text)


def parse_jobs(log_text: str) -> dict[int, JobRecord]:
    """Snakemake job id -> rule, local or not, wildcards, SLURM job ids (resubmissions too)."""
    jobs: dict[int, JobRecord] = {}
    for local, rule, body in JOB_BLOCK.findall(log_text):
        fields = dict(line.strip().split(": ", 1) for line in body.splitlines() if ": " in line)
        if "jobid" not in fields:
            continue
        jobid = int(fields["jobid"])
        resources = dict(
            item.split("=", 1) for item in fields.get("resources", "").split(", ") if "=" in item
        )
        jobs.setdefault(jobid, JobRecord(rule, bool(local), fields.get("wildcards", ""), resources))
    for jobid, slurm_id, slurm_log in SUBMITTED.findall(log_text):
        record = jobs[int(jobid)]
        record.slurm_ids.append(slurm_id)
        record.slurm_logs.append(Path(slurm_log))
    return jobs


def run_logged(args: list[str], env: dict[str, str], out: Path, timeout: float) -> Run:
    """Run a command with its output in a file (a pipe could fill up) and time it."""
    started = time.perf_counter()
    with out.open("w") as sink:
        result = subprocess.run(
            args, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout
        )
    wall = time.perf_counter() - started
    workdir = Path(args[args.index("--directory") + 1])
    return Run(workdir, result.returncode, out.read_text(), wall)


def scontrol_job(slurm_id: str, env: dict[str, str]) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (finished jobs stay for MinJobAge=3600 s)."""
    text = subprocess.run(
        ["scontrol", "show", "job", "-o", slurm_id],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def cluster(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), command], env=env, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    """A running one-node cluster for this module; stopped afterwards, whatever happened."""
    reason = cannot_run_reason()
    if reason:
        pytest.skip(reason)
    env = client_env()
    try:
        started = cluster("start", env)
        if started.returncode in (3, 4):  # no apt / no network / another SLURM on this host
            pytest.skip(f"SLURM cannot run here: {started.stderr.strip()[-500:]}")
        assert started.returncode == 0, (
            f"cluster.sh start failed ({started.returncode}):\n{started.stderr[-1500:]}"
        )
        yield env
    finally:
        # Also after a failed or interrupted start: stop whatever came up (by pid files).
        stopped = cluster("stop", env)
        if stopped.returncode != 0:
            warnings.warn(f"cluster.sh stop failed: {stopped.stderr[-2000:]}", stacklevel=1)


@pytest.fixture(scope="module")
def slurm_run(slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = write_workdir(tmp_path_factory.mktemp("slurm"), tiny_config())
    run = run_logged(
        slurm_args(workdir, "all"), slurm_env, workdir / "snakemake.out", RUN_TIMEOUT_S
    )
    assert run.returncode == 0, run.output[-6000:]
    print(f"\ntiny workflow through SLURM: {run.wall_s:.0f} s wall", flush=True)
    return run


def test_cluster_announces_a_gpu(slurm_env: dict[str, str]) -> None:
    nodes = subprocess.run(
        ["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%t %G"],
        env=slurm_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert nodes[0] in {"idle", "mix", "alloc"} and nodes[1].startswith(f"gpu:{GPUS}"), nodes


def test_every_non_local_job_went_through_sbatch(slurm_run: Run) -> None:
    jobs = slurm_run.jobs
    remote = {jobid: job for jobid, job in jobs.items() if not job.local}
    assert {"synthetic_scenes", "tile"} <= {job.rule for job in remote.values()}
    missing = {job.rule for job in remote.values() if not job.slurm_ids}
    assert not missing, f"rules run without a SLURM job id: {sorted(missing)}"
    assert not [job.rule for job in jobs.values() if job.local and job.slurm_ids]
    for job in remote.values():
        # SLURM's own record: the job ran there, under the plugin's rule comment, and succeeded.
        info = scontrol_job(job.slurm_ids[-1], client_env())
        assert info["JobState"] == "COMPLETED", (job.rule, info["JobState"])
        assert info["Comment"].startswith(f"rule_{job.rule}"), info["Comment"]
        assert info["Partition"] == PARTITION
        assert job.slurm_logs[-1].is_file(), job.slurm_logs[-1]


def test_tile_store_built_on_the_cluster(slurm_run: Run) -> None:
    ds = open_store(slurm_run.workdir / "results" / "tiles" / "synthetic.zarr")
    assert ds.sizes["patch"] == 5 * 4


# --- training stage -----------------------------------------------------------------------


def test_gpu_jobs_got_a_gpu_and_training_fell_back_to_cpu(slurm_run: Run) -> None:
    require_training_rules()
    gpu_jobs = [job for job in slurm_run.jobs.values() if int(job.resources.get("gpu", 0)) > 0]
    train_jobs = [job for job in slurm_run.jobs.values() if is_training_rule(job.rule)]
    assert train_jobs, "no training job in the run"
    assert set(map(id, train_jobs)) <= set(map(id, gpu_jobs)), "a training job asked for no GPU"
    for job in gpu_jobs:
        assert not job.local and job.slurm_ids, job
        # What sbatch asked for (--gpus=N from `resources: gpu=N`), as SLURM recorded it.
        info = scontrol_job(job.slurm_ids[-1], client_env())
        wanted = f"gres:gpu:{job.resources['gpu']}"
        assert info.get("TresPerJob") == wanted, (job.rule, job.wildcards, info.get("TresPerJob"))
    for job in train_jobs:
        variant = job.wildcards.removeprefix("variant=")
        log = (slurm_run.workdir / "results" / "logs" / f"train_{variant}.log").read_text()
        # SLURM set CUDA_VISIBLE_DEVICES; /dev/null is no GPU, so the trainer chose the CPU.
        match = DEVICE_LINE.search(log)
        assert match, f"{variant}: no CPU fallback line with CUDA_VISIBLE_DEVICES in its log"
        # The job's own GPUs: as many distinct indices as it asked for, among the node's.
        indices = match.group(1).split(",")
        assert len(set(indices)) == len(indices) == int(job.resources["gpu"]), indices
        assert set(indices) <= {str(i) for i in range(GPUS)}, indices
        assert (slurm_run.workdir / "results" / "models" / variant / "meta.json").is_file()


def test_two_gpu_jobs_shared_the_node_at_once(slurm_run: Run) -> None:
    """The node's two GPUs and two CPUs were used together: some two GPU jobs overlapped in
    time, by SLURM's own start and end records."""
    require_training_rules()
    spans = []
    for job in slurm_run.jobs.values():
        if int(job.resources.get("gpu", 0)) > 0:
            info = scontrol_job(job.slurm_ids[-1], client_env())
            spans.append((info["StartTime"], info["EndTime"]))  # ISO 8601: sorts as text
    spans.sort()
    pairs = zip(spans, spans[1:], strict=False)
    assert any(later[0] < earlier[1] for earlier, later in pairs), spans


def test_tables_produced(slurm_run: Run) -> None:
    require_training_rules()
    tables = sorted(set(re.findall(r"results/table\d+\.csv", slurm_run.log_text)))
    if not tables:
        pytest.skip("the workflow builds no tables yet")
    for table in tables:
        lines = (slurm_run.workdir / table).read_text().splitlines()
        assert len(lines) >= 2, f"{table} has no rows"


def first_scratch_variant() -> str:
    """A variant trained from scratch: it needs nothing but the tile store."""
    from tdpcr.training.variants import VARIANTS

    return next(name for name, variant in VARIANTS.items() if variant.init_from is None)


def running_train_job(env: dict[str, str], variant: str) -> str | None:
    """SLURM id of the running training job of `variant` (the plugin's comment names it)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        slurm_id, _, comment = line.partition("|")
        if comment.startswith("rule_train") and variant in comment:
            return slurm_id
    return None


def test_cancelled_training_is_resubmitted_and_resumes(
    slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    require_training_rules()
    from tdpcr.training.variants import VARIANTS

    variant = first_scratch_variant()
    config = tiny_config()
    config["train"]["steps"][VARIANTS[variant].steps_key] = PREEMPT_STEPS
    config["train"]["val_every"] = PREEMPT_VAL_EVERY
    workdir = write_workdir(tmp_path_factory.mktemp("preempt"), config)
    train_log = workdir / "results" / "logs" / f"train_{variant}.log"
    target = f"results/models/{variant}/meta.json"

    # Inputs first, locally: the point here is the training job.
    inputs = subprocess.run(
        snakemake_command(workdir, "--cores", "2", "--omit-from", "train", target),
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert inputs.returncode == 0, inputs.stderr[-4000:]

    out = workdir / "snakemake.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            slurm_args(workdir, target), env=slurm_env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            cancelled = None
            deadline = time.monotonic() + 900
            while cancelled is None and proc.poll() is None and time.monotonic() < deadline:
                slurm_id = running_train_job(slurm_env, variant)
                # Cancel once the trainer has logged a validation step: it is mid-training.
                if (
                    slurm_id
                    and train_log.is_file()
                    and re.search(r"step \d+:", train_log.read_text())
                ):
                    subprocess.run(["scancel", slurm_id], env=slurm_env, check=True)
                    cancelled = slurm_id
                time.sleep(0.5)
            assert cancelled, f"never saw the training job running:\n{out.read_text()[-4000:]}"
            returncode = proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    output = out.read_text()
    assert returncode == 0, output[-6000:]

    assert scontrol_job(cancelled, slurm_env)["JobState"] == "CANCELLED"
    run = Run(workdir, returncode, output, 0.0)
    (train_job,) = [job for job in run.jobs.values() if is_training_rule(job.rule)]
    # The profile's `retries: 1` submitted it again as a new SLURM job ...
    assert len(train_job.slurm_ids) == 2 and train_job.slurm_ids[0] == cancelled
    # ... which continued from the `last/` checkpoint the SIGTERM-ed trainer saved.
    resumed = RESUMED.search(train_log.read_text())
    assert resumed and 0 < int(resumed.group(1)) < PREEMPT_STEPS, train_log.read_text()[-2000:]
    assert (workdir / target).is_file()


# --- timing -------------------------------------------------------------------------------


def test_wall_time_slurm_vs_local(slurm_run: Run, tiny_run_timed: tuple[Path, float]) -> None:
    """The same tiny workflow through SLURM and through the local executor (the workflow
    tests' run of it, not a second one: the comparison needs no extra run)."""
    _, local_s = tiny_run_timed
    submitted = sum(len(job.slurm_ids) for job in slurm_run.jobs.values())
    assert submitted > 0 and local_s > 0
    print(
        f"\ntiny workflow wall time: SLURM (profile, {submitted} sbatch jobs) "
        f"{slurm_run.wall_s:.0f} s, local executor (--cores 2) {local_s:.0f} s",
        flush=True,
    )
