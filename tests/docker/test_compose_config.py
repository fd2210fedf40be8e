"""compose.yaml and deploy/compose.gpu.yaml, as Compose itself resolves them.

The promises a user relies on before anything starts: nothing is published beyond
loopback, every service has a healthcheck, the four trainers run one image with a
branch each, the encoder cannot write the model repository, no secret is baked in,
the reporter waits for healthy trainers, no service but the language-model servers (vLLM,
TGI) keeps a Linux capability or may gain privileges, the local-llm profile serves
Mistral-7B-Instruct and Phi-2 through vLLM on a GPU each with the describer pointed at them
(TGI in its own profile), and the GPU overlay reserves GPUs for the trainers, encoder and TGI
containers and switches to the GPU images.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINERS = [f"trainer-b{i}" for i in range(1, 5)]

pytestmark = pytest.mark.docker


def compose_config(*files: str, profiles: tuple[str, ...] = (), env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = ["docker", "compose"]
    for f in files or ("compose.yaml",):
        cmd += ["-f", f]
    for p in profiles:
        cmd += ["--profile", p]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
    proc = subprocess.run(
        [*cmd, "config", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cfg(docker_available: None) -> dict[str, Any]:
    return compose_config(profiles=("local-llm",))


def test_every_published_port_binds_loopback_only(cfg: dict[str, Any]) -> None:
    published = [(name, p) for name, s in cfg["services"].items() for p in s.get("ports", [])]
    assert len(published) >= 14
    for name, p in published:
        assert p.get("host_ip") == "127.0.0.1", (name, p)


def test_a_user_can_widen_the_bind_address(docker_available: None) -> None:
    cfg = compose_config(env={"TRAJLAB_BIND": "0.0.0.0"})
    assert {p["host_ip"] for s in cfg["services"].values() for p in s.get("ports", [])} == {"0.0.0.0"}


def test_every_service_has_a_healthcheck(cfg: dict[str, Any]) -> None:
    for name, s in cfg["services"].items():
        assert s.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_four_trainers_one_image_one_branch_each_resuming_after_a_crash(cfg: dict[str, Any]) -> None:
    svcs = cfg["services"]
    assert {svcs[t]["image"] for t in TRAINERS} == {"trajlab/trainer:cpu"}
    assert [svcs[t]["environment"]["TRAJLAB_TRAINER_BRANCH"] for t in TRAINERS] == ["b1", "b2", "b3", "b4"]
    runs = {svcs[t]["environment"]["TRAJLAB_TRAINER_RUN_DIR"] for t in TRAINERS}
    assert len(runs) == 4  # each branch checkpoints in its own folder on the runs volume
    for t in TRAINERS:
        env = svcs[t]["environment"]
        assert env["TRAJLAB_TRAINER_AUTO_START"] == "true" and env["TRAJLAB_TRAINER_PROFILE"] == "quick"
        assert svcs[t]["restart"] in ("unless-stopped", "on-failure", "always")
        assert {v["target"] for v in svcs[t]["volumes"]} >= {"/data", "/models", "/runs"}


def test_every_service_but_tgi_drops_all_capabilities_and_privilege_gain(cfg: dict[str, Any]) -> None:
    # They all run as non-root users that need no capability; the running containers'
    # kernel view (CapBnd, NoNewPrivs) is checked by test_compose_e2e.py.
    hardened = [name for name in cfg["services"] if not name.startswith(("tgi-", "vllm-"))]
    assert len(hardened) == 9  # four trainers, encoder, describer, reporter, Prometheus, Grafana
    for name in hardened:
        svc = cfg["services"][name]
        assert svc.get("cap_drop") == ["ALL"], (name, svc.get("cap_drop"))
        assert "no-new-privileges:true" in svc.get("security_opt", []), (name, svc.get("security_opt"))


def test_the_encoder_mounts_the_model_repository_read_only(cfg: dict[str, Any]) -> None:
    vols = {v["target"]: v for v in cfg["services"]["encoder"]["volumes"]}
    assert vols["/models"]["source"] == "models" and vols["/models"]["read_only"] is True


def test_no_secret_is_baked_and_the_key_comes_from_the_environment(docker_available: None) -> None:
    assert compose_config()["services"]["describer"]["environment"]["OPENAI_API_KEY"] == ""
    cfg = compose_config(env={"OPENAI_API_KEY": "sk-test"})
    assert cfg["services"]["describer"]["environment"]["OPENAI_API_KEY"] == "sk-test"
    for path in ("deploy/docker/Dockerfile", "deploy/docker/service.py"):
        assert "OPENAI_API_KEY" not in (REPO / path).read_text(), path


def test_every_service_image_is_built_from_the_one_dockerfile_with_its_service_argument(cfg: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in cfg["services"].items() if "build" in s}
    assert set(built) == {"trainer-b1", "encoder", "describer", "reporter"}  # b2-b4 reuse b1's image
    for name, build in built.items():
        assert Path(build["context"]) == REPO and build["dockerfile"] == "deploy/docker/Dockerfile", name
        assert build["args"]["SERVICE"] == name.removesuffix("-b1"), name
        assert {"BASE_IMAGE", "VARIANT"} <= set(build["args"]), name
    assert not list(REPO.glob("services/*/Dockerfile"))  # no per-service copy left behind


def test_the_reporter_waits_for_healthy_trainers_and_writes_to_host_reports(cfg: dict[str, Any]) -> None:
    rep = cfg["services"]["reporter"]
    for t in TRAINERS:
        assert rep["depends_on"][t]["condition"] == "service_healthy"
    assert rep["environment"]["TRAJLAB_REPORTER_BUILD_WHEN_DONE"] == "true"
    binds = {v["target"]: v for v in rep["volumes"] if v["type"] == "bind"}
    assert Path(binds["/reports"]["source"]) == REPO / "reports"


def test_local_llm_profile_serves_both_models_through_vllm_on_a_gpu_each(cfg: dict[str, Any]) -> None:
    svcs = cfg["services"]
    models = {}
    gpus = []
    for name in ("vllm-mistral", "vllm-phi2"):
        svc = svcs[name]
        assert svc["image"].startswith("vllm/vllm-openai:"), svc["image"]
        args = svc["command"]
        models[args[args.index("--served-model-name") + 1]] = args[args.index("--model") + 1]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"], name
        gpus.append(devices[0]["device_ids"][0])
        # The chat template the describer's system message needs, from the repository, read-only.
        template = args[args.index("--chat-template") + 1]
        mount = {v["target"]: v for v in svc["volumes"]}["/templates"]
        assert mount["read_only"] and (Path(mount["source"]) / Path(template).name).is_file(), template
        assert svc["healthcheck"]["test"] and svc["environment"]["VLLM_API_KEY"] == ""
    assert models == {"mistral": "mistralai/Mistral-7B-Instruct-v0.2", "phi-2": "microsoft/phi-2"}
    assert len(set(gpus)) == 2  # one GPU each by default
    env = svcs["describer"]["environment"]
    ports = {n: svcs[n]["command"][svcs[n]["command"].index("--port") + 1] for n in ("vllm-mistral", "vllm-phi2")}
    assert json.loads(env["TRAJLAB_DESCRIBER_OPENAI_BASE_URLS"]) == {
        "mistral": f"http://vllm-mistral:{ports['vllm-mistral']}/v1",
        "phi-2": f"http://vllm-phi2:{ports['vllm-phi2']}/v1",
    }
    assert json.loads(env["TRAJLAB_DESCRIBER_BRANCH_BACKENDS"]) == {"b3": "openai:mistral", "b4": "openai:phi-2"}
    # vLLM asks for the key the describer sends.
    keyed = compose_config(profiles=("local-llm",), env={"OPENAI_API_KEY": "sk-local"})["services"]
    assert keyed["vllm-mistral"]["environment"]["VLLM_API_KEY"] == keyed["describer"]["environment"]["OPENAI_API_KEY"]


def test_the_describer_settings_compose_passes_are_valid(cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.describer.settings import DescriberSettings
    from trajlab.config import load_settings
    from trajlab.profiles import load_branches

    env = cfg["services"]["describer"]["environment"]
    for k, v in env.items():
        if k.startswith("TRAJLAB_DESCRIBER_") and k != "TRAJLAB_DESCRIBER_BRANCHES_FILE":
            monkeypatch.setenv(k, v)
    s = load_settings(DescriberSettings)
    defaults = s.branch_defaults({n: b.describer_backend for n, b in load_branches().items()})
    assert defaults["b3"] == "openai:mistral" and defaults["b4"] == "openai:phi-2"
    assert s.openai_base_urls["phi-2"] == "http://vllm-phi2:8000/v1" and s.prices == {}


def test_the_describer_takes_a_price_table_and_tgi_backends_from_the_environment(docker_available: None) -> None:
    prices = '{"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}'
    env = compose_config(env={"TRAJLAB_DESCRIBER_PRICES": prices, "TRAJLAB_DESCRIBER_BRANCH_BACKENDS": "{}"})
    denv = env["services"]["describer"]["environment"]
    assert json.loads(denv["TRAJLAB_DESCRIBER_PRICES"]) == json.loads(prices)
    assert denv["TRAJLAB_DESCRIBER_BRANCH_BACKENDS"] == "{}"  # b3/b4 back to the branches file's tgi:*


def test_local_llm_tgi_profile_wires_tgi_to_the_describer(docker_available: None) -> None:
    svcs = compose_config(profiles=("local-llm-tgi",))["services"]
    assert not {"vllm-mistral", "vllm-phi2"} & set(svcs)
    assert "text-generation-inference" in svcs["tgi-mistral"]["image"]
    assert "mistralai/Mistral-7B-Instruct" in " ".join(svcs["tgi-mistral"]["command"])
    assert "microsoft/phi-2" in " ".join(svcs["tgi-phi2"]["command"])
    endpoints = json.loads(svcs["describer"]["environment"]["TRAJLAB_DESCRIBER_TGI_ENDPOINTS"])
    assert endpoints == {"mistral": "http://tgi-mistral:80", "phi-2": "http://tgi-phi2:80"}
    model = compose_config(profiles=("local-llm-tgi",), env={"TRAJLAB_TGI_MISTRAL_MODEL": "my/model"})
    assert "my/model" in model["services"]["tgi-mistral"]["command"]


def test_without_a_profile_no_language_model_container_starts(docker_available: None) -> None:
    assert not {"tgi-mistral", "tgi-phi2", "vllm-mistral", "vllm-phi2"} & set(compose_config()["services"])
    assert not {"tgi-mistral", "tgi-phi2"} & set(compose_config(profiles=("local-llm",))["services"])


def test_gpu_overlay_validates_and_reserves_gpus(docker_available: None) -> None:
    cfg = compose_config("compose.yaml", "deploy/compose.gpu.yaml", profiles=("local-llm-tgi",))
    svcs = cfg["services"]
    for name in [*TRAINERS, "encoder", "tgi-mistral", "tgi-phi2"]:
        devices = svcs[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    # All four trainers reserve the same device: they share one GPU by time-slicing.
    assert len({tuple(svcs[t]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]) for t in TRAINERS}) == 1
    assert {svcs[t]["image"] for t in TRAINERS} == {"trajlab/trainer:gpu"}
    assert svcs["trainer-b1"]["build"]["args"]["VARIANT"] == "gpu"
    assert svcs["encoder"]["image"] == "trajlab/encoder:gpu"
    assert json.loads(svcs["encoder"]["environment"]["TRAJLAB_ENCODER_PROVIDERS"])[0] == "CUDAExecutionProvider"
    # The CPU services stay as they are.
    assert "deploy" not in svcs["describer"] or not svcs["describer"]["deploy"].get("resources")


def test_trainers_and_describer_read_the_branches_file_named_by_trajlab_branches(tmp_path: Path) -> None:
    """The seed branches by default; TRAJLAB_BRANCHES puts another file of the host in their place."""
    for env, source in (({}, REPO / "trajlab" / "configs" / "branches.yaml"),
                        ({"TRAJLAB_BRANCHES": str(tmp_path / "mine.yaml")}, tmp_path / "mine.yaml")):
        svcs = compose_config(env=env)["services"]
        for name, var in [*((t, "TRAJLAB_TRAINER_BRANCHES_FILE") for t in TRAINERS),
                          ("describer", "TRAJLAB_DESCRIBER_BRANCHES_FILE")]:
            assert svcs[name]["environment"][var] == "/config/branches.yaml", name
            vols = {v["target"]: v for v in svcs[name]["volumes"]}
            mount = vols["/config/branches.yaml"]
            assert Path(mount["source"]) == source and mount["read_only"] is True, (name, mount)


def test_trajlab_seeds_reaches_every_trainer_and_the_reporter_asks_each_seed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TRAJLAB_SEEDS=2 docker compose up: each trainer trains two seeds, the reporter reports b1@s0, b1@s1, ..."""
    from services.reporter.settings import ReporterSettings
    from services.trainer.seed_group import child_envs
    from services.trainer.settings import TrainerSettings
    from trajlab.config import load_settings
    from trajlab.profiles import load_profile

    default = compose_config()["services"]
    assert {default[t]["environment"]["TRAJLAB_TRAINER_SEEDS"] for t in TRAINERS} == {"0"}  # one run per branch
    assert default["reporter"]["environment"]["TRAJLAB_REPORTER_TRAINER_SEEDS"] == "0"
    svcs = compose_config(env={"TRAJLAB_SEEDS": "2"})["services"]
    # The reporter and trainer-b1 configured exactly as compose renders them.
    for k, v in svcs["reporter"]["environment"].items():
        if k.startswith("TRAJLAB_REPORTER_"):
            monkeypatch.setenv(k, v)
    targets = load_settings(ReporterSettings).trainer_targets()
    base = load_profile("quick").training.seed
    assert list(targets) == [f"b{i}@s{base + k}" for i in range(1, 5) for k in (0, 1)]
    for k, v in svcs["trainer-b1"]["environment"].items():
        if k.startswith("TRAJLAB_TRAINER_") and k not in ("TRAJLAB_TRAINER_BRANCHES_FILE",):
            monkeypatch.setenv(k, v)
    trainer = load_settings(TrainerSettings)
    assert trainer.seeds == 2
    group = child_envs(trainer, load_profile(trainer.profile).training.seed)
    assert {run: f"trainer-b1:{env['TRAJLAB_TRAINER_PORT']}" for run, env in group.items()} == {
        r: t for r, t in targets.items() if r.startswith("b1@")
    }
    # The trainers' healthcheck reads the same variable, so "healthy" means every seed serves.
    assert all(svcs[t]["healthcheck"]["test"][-1] == "trainer" for t in TRAINERS)
    # Each seed's trainer is published on the host where `trajlab monitor --seeds N
    # --seed-port-step 10` looks for it: seed k of trainer-b<i> at 5006<i> + 10 k.
    from trajlab.runs import seed_group_targets

    for i, t in enumerate(TRAINERS, start=1):
        published = {int(p["published"]): int(p["target"]) for p in svcs[t]["ports"] if p["target"] != 9100}
        on_host = seed_group_targets(f"b{i}", f"127.0.0.1:{50060 + i}", list(range(4)), port_step=10)
        assert {int(h.rsplit(":", 1)[1]): 50052 + k for k, h in enumerate(on_host.values())} == published, t


def test_stress_sets_reach_the_reporter_and_are_built_outside_the_read_only_dataset() -> None:
    assert compose_config()["services"]["reporter"]["environment"]["TRAJLAB_REPORTER_STRESS_SETS"] == ""
    rep = compose_config(env={"TRAJLAB_REPORTER_STRESS_SETS": "clutter,noise"})["services"]["reporter"]
    env = rep["environment"]
    assert env["TRAJLAB_REPORTER_STRESS_SETS"] == "clutter,noise"
    read_only = [v["target"] for v in rep["volumes"] if v.get("read_only")]
    assert "/data" in read_only
    stress = env["TRAJLAB_REPORTER_STRESS_DIR"]
    assert not any(stress == t or stress.startswith(t + "/") for t in read_only), stress
