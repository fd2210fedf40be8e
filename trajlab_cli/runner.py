"""``trajlab run``: the whole comparison on one machine, as local processes.

Builds or reuses the dataset, starts the four trainers, the encoder, the
describer, the reporter (and Prometheus when its binary is installed) on free
localhost ports, shows progress until training ends, has the encoder serve the
exported models, builds the report through the reporter's BuildReport RPC, and
stops every process it started, also on Ctrl-C or when one of them fails.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.reporter.monitor import BranchView, poll_once
from services.trainer.run_matrix import run_dir_of
from trajlab.clients.health import wait_until_serving as health_wait
from trajlab.clients.reporter import Report, ReporterClient
from trajlab.data.stress import parse_sets
from trajlab.profiles import Profile, load_branches, load_profile
from trajlab.runs import ABLATIONS, ablated_branch, run_name, split_ablation, split_run_name, training_seeds
from trajlab.trainer.v1.trainer_pb2 import TRAINING_STATE_DONE
from trajlab_cli.supervisor import Supervisor, free_port

log = logging.getLogger(__name__)



@dataclass
class RunPlan:
    """Where everything goes and which ports everything listens on."""

    profile: Profile
    profile_ref: str  # what services are given: a profile name, or an absolute YAML path
    branches: list[str]
    seeds: list[int]  # training seeds; each branch is trained once per seed
    workdir: Path  # runs/<profile>/: trainer run dirs, logs, prometheus data
    data_dir: Path
    model_repo: Path
    reports_dir: Path
    stamp: str
    use_prometheus: bool
    threads_per_trainer: int
    branches_file: Path | None = None  # None = the seed branches (trajlab/configs/branches.yaml)
    ablations: list[str] = field(default_factory=list)  # each branch also trained with these off
    stress_sets: str = ""  # the reporter's stress sets: "" none, "all", or "clutter,noise"
    ports: dict[str, int] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoints_path(self) -> Path:
        return self.workdir / "endpoints.json"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs" / self.stamp

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def runs(self) -> list[str]:
        """Run names, branch-major: b1@s0, b1@s1, [b1-noperc@s0, ...,] b2@s0, ... (trajlab.runs)."""
        variants = [v for b in self.branches for v in (b, *(ablated_branch(b, a) for a in self.ablations))]
        return [run_name(v, s) for v in variants for s in self.seeds]


@dataclass
class RunOutcome:
    report: Report
    failed_branches: list[str]


def make_plan(
    profile_name: str,
    *,
    branches: list[str] | None,
    root: Path,
    use_prometheus: bool,
    threads_per_trainer: int | None,
    branches_file: Path | None = None,
    seeds: int | None = None,
    ablations: list[str] | None = None,
    stress_sets: str = "",
) -> RunPlan:
    """Plan a run. ``branches``: names from ``branches_file`` (default: the four seed branches);
    None = all of them. Bad input (an unknown or repeated branch, seeds < 1) is refused before
    anything starts."""
    from services.trainer.branch import known_parts
    from trajlab.errors import ConfigError

    profile = load_profile(profile_name)
    n_seeds = profile.training.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds: expected a number of training seeds >= 1, got {n_seeds}")
    root = root.resolve()  # children, logs and the report print absolute paths
    as_path = Path(profile_name)
    profile_ref = str(as_path.resolve()) if as_path.suffix else profile_name
    if branches_file is not None:
        branches_file = Path(branches_file).resolve()
    known = load_branches(branches_file, known=known_parts())
    chosen = branches or sorted(known)
    unknown = [b for b in chosen if b not in known]
    if unknown:
        raise ConfigError(f"--branches: unknown branch(es) {unknown}; known: {sorted(known)}")
    repeated = sorted({b for b in chosen if chosen.count(b) > 1})
    if repeated:
        raise ConfigError(f"--branches: branch(es) listed twice: {repeated}; list each branch once")
    ablate = list(ablations or [])
    bad = [a for a in ablate if a not in ABLATIONS]
    if bad:
        raise ConfigError(f"--ablate: unknown ablation(s) {bad}; known: {sorted(ABLATIONS)}")
    if len(set(ablate)) < len(ablate):
        raise ConfigError(f"--ablate: an ablation is listed twice: {ablate}")
    if stress_sets:
        # An unknown or repeated set name is refused before anything starts.
        parse_sets(stress_sets, what="TRAJLAB_REPORTER_STRESS_SETS")
    workdir = root / "runs" / profile.name
    plan = RunPlan(
        profile=profile,
        profile_ref=profile_ref,
        branches=chosen,
        seeds=training_seeds(profile.training.seed, n_seeds),
        workdir=workdir,
        data_dir=root / "data" / profile.name,
        model_repo=root / "models" / profile.name,
        reports_dir=root / "reports",
        stamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        use_prometheus=use_prometheus and shutil.which("prometheus") is not None,
        threads_per_trainer=threads_per_trainer or max(1, profile.training.threads),
        branches_file=branches_file,
        ablations=ablate,
        stress_sets=stress_sets,
    )
    names = [*(f"trainer-{r}" for r in plan.runs), "encoder", "describer", "reporter"]
    for n in names:
        plan.ports[n] = free_port()
        plan.metrics_ports[n] = free_port()
    if plan.use_prometheus:
        plan.ports["prometheus"] = free_port()
    return plan


def prometheus_config(plan: RunPlan) -> str:
    """A Prometheus config scraping every service's /metrics, one job per service kind."""
    lines = ["global:", "  scrape_interval: 2s", "  evaluation_interval: 2s", "scrape_configs:"]
    lines += ["  - job_name: trainer", "    static_configs:"]
    for r in plan.runs:
        b, seed = split_run_name(r)
        # The trainer's own gauges carry branch=<run>; the target adds the run's base branch and seed.
        lines += [
            f"      - targets: ['127.0.0.1:{plan.metrics_ports['trainer-' + r]}']",
            f"        labels: {{service: trainer, branch: '{r}', run: '{r}', base_branch: '{b}', "
            f"seed: '{seed}'}}",
        ]
    for n in ("encoder", "describer", "reporter"):
        lines += [
            f"  - job_name: {n}",
            "    static_configs:",
            f"      - targets: ['127.0.0.1:{plan.metrics_ports[n]}']",
            f"        labels: {{service: {n}}}",
        ]
    return "\n".join(lines) + "\n"


def _service_env(plan: RunPlan, name: str, prefix: str) -> dict[str, str]:
    return {
        f"{prefix}HOST": "127.0.0.1",
        f"{prefix}PORT": str(plan.ports[name]),
        f"{prefix}METRICS_HOST": "127.0.0.1",
        f"{prefix}METRICS_PORT": str(plan.metrics_ports[name]),
    }


def start_services(plan: RunPlan, sup: Supervisor, fresh: bool) -> None:
    """Start every process of the plan (children of ``sup``)."""
    if plan.use_prometheus:
        pdir = plan.workdir / "prometheus"
        if pdir.exists():
            shutil.rmtree(pdir)
        pdir.mkdir(parents=True)
        (pdir / "prometheus.yml").write_text(prometheus_config(plan))
        sup.start(
            "prometheus",
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={pdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={pdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{plan.ports['prometheus']}",
            ],
        )
    desc_env = _service_env(plan, "describer", "TRAJLAB_DESCRIBER_")
    if plan.branches_file is not None:  # the describer routes each branch to its backend
        desc_env["TRAJLAB_DESCRIBER_BRANCHES_FILE"] = str(plan.branches_file)
    sup.python_module("describer", "services.describer", desc_env)
    enc_env = _service_env(plan, "encoder", "TRAJLAB_ENCODER_")
    enc_env["TRAJLAB_ENCODER_MODEL_REPO"] = str(plan.model_repo)
    sup.python_module("encoder", "services.encoder", enc_env)
    for r in plan.runs:
        trained, seed = split_run_name(r)
        b, ablation = split_ablation(trained)
        name = f"trainer-{r}"
        run_dir = run_dir_of(plan.workdir, trained, seed)  # where the trainer's resolve_run puts it
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        env = _service_env(plan, name, "TRAJLAB_TRAINER_")
        env.update(
            TRAJLAB_TRAINER_BRANCH=b,
            TRAJLAB_TRAINER_SEED=str(seed),
            TRAJLAB_TRAINER_ABLATE=ablation,
            TRAJLAB_TRAINER_PROFILE=plan.profile_ref,
            TRAJLAB_TRAINER_DATA_DIR=str(plan.data_dir),
            TRAJLAB_TRAINER_RUN_DIR=str(plan.workdir),  # the base: <base>/<branch>/seed-<seed>
            TRAJLAB_TRAINER_MODEL_REPO=str(plan.model_repo),
            TRAJLAB_TRAINER_AUTO_START="true",
            TRAJLAB_TRAINER_TEXT_CACHE_DIR=str(plan.workdir.parent.parent / "cache" / "text"),
            TRAJLAB_TRAINER_THREADS=str(plan.threads_per_trainer),
            # Four trainers share the cores: one intra-op thread pool each, no oversubscription.
            OMP_NUM_THREADS=str(plan.threads_per_trainer),
        )
        if plan.branches_file is not None:
            env["TRAJLAB_TRAINER_BRANCHES_FILE"] = str(plan.branches_file)
        sup.python_module(name, "services.trainer", env)
    rep_env = _service_env(plan, "reporter", "TRAJLAB_REPORTER_")
    rep_env.update(
        TRAJLAB_REPORTER_TRAINERS=",".join(f"{r}={plan.target('trainer-' + r)}" for r in plan.runs),
        TRAJLAB_REPORTER_ENCODER_TARGET=plan.target("encoder"),
        TRAJLAB_REPORTER_DESCRIBER_TARGET=plan.target("describer"),
        TRAJLAB_REPORTER_REPORTS_DIR=str(plan.reports_dir),
        TRAJLAB_REPORTER_DATA_DIR=str(plan.data_dir),
        TRAJLAB_REPORTER_PROFILE=plan.profile_ref,
        TRAJLAB_REPORTER_STRESS_SETS=plan.stress_sets,
        TRAJLAB_REPORTER_PROMETHEUS_URL=(
            f"http://127.0.0.1:{plan.ports['prometheus']}" if plan.use_prometheus else ""
        ),
    )
    sup.python_module("reporter", "services.reporter", rep_env)


def write_endpoints(plan: RunPlan) -> Path:
    """Write where every service of this run listens, for `trajlab monitor`, `trajlab classify` etc."""
    import json

    data = {
        "stamp": plan.stamp,
        "trainers": {r: plan.target(f"trainer-{r}") for r in plan.runs},
        "encoder": plan.target("encoder"),
        "describer": plan.target("describer"),
        "reporter": plan.target("reporter"),
        "prometheus": f"http://127.0.0.1:{plan.ports['prometheus']}" if plan.use_prometheus else "",
        "metrics": {n: f"http://127.0.0.1:{p}/metrics" for n, p in plan.metrics_ports.items()},
        "logs": str(plan.log_dir),
    }
    path = plan.endpoints_path
    path.write_text(json.dumps(data, indent=2))
    return path


def wait_healthy(target: str, sup: Supervisor, timeout: float, what: str) -> None:
    """Wait until the gRPC health check at ``target`` answers SERVING."""
    with grpc.insecure_channel(target) as ch:
        health_wait(
            ch,
            what=f"{what} at {target}",
            timeout=timeout,
            poll_seconds=0.25,
            check_timeout=2.0,
            on_poll=sup.check,
        )


def wait_for_models(plan: RunPlan, branches: list[str], sup: Supervisor, timeout: float) -> None:
    """Wait until the encoder serves a model of every branch that finished training."""
    from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(plan.target("encoder")) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        while True:
            sup.check()
            try:
                models = stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=5).models
                served = {m.model.branch for m in models}
                if set(branches) <= served:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the encoder did not load models of {branches} within {timeout:.0f} s")
            time.sleep(0.5)


def build_report(plan: RunPlan, timeout: float) -> Report:
    with ReporterClient(plan.target("reporter"), timeout=timeout) as client:
        return client.build_report(branches=plan.runs)


def run_pipeline(
    plan: RunPlan,
    *,
    fresh: bool = False,
    on_status: Callable[[list[BranchView]], None] | None = None,
    training_timeout: float = 3 * 3600.0,
) -> RunOutcome:
    """Run everything; always stops every child before returning or raising."""
    from trajlab.data import build_dataset

    plan.workdir.mkdir(parents=True, exist_ok=True)
    build_dataset(plan.profile.dataset, plan.data_dir, progress=sys.stderr.isatty())
    sup = Supervisor(plan.log_dir, grace_seconds=15.0)
    try:
        start_services(plan, sup, fresh)
        write_endpoints(plan)
        for name in ("describer", "reporter", *(f"trainer-{r}" for r in plan.runs)):
            wait_healthy(plan.target(name), sup, timeout=120, what=name)
        deadline = time.monotonic() + training_timeout
        targets = {r: plan.target(f"trainer-{r}") for r in plan.runs}
        while True:
            sup.check()
            views = poll_once(targets)  # the monitor's own poll: one GetStatus per trainer, in parallel
            if on_status is not None:
                on_status(views)
            if all(v.finished for v in views):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"training did not finish within {training_timeout:.0f} s")
            time.sleep(1.0)
        done = [v.branch for v in views if v.status is not None and v.status.state == TRAINING_STATE_DONE]
        failed = [r for r in plan.runs if r not in done]
        if done:
            wait_for_models(plan, done, sup, timeout=120)
        return RunOutcome(report=build_report(plan, timeout=900), failed_branches=failed)
    finally:
        sup.stop_all()
