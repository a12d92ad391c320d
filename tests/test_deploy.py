"""deploy/: the Dockerfile, compose file, Prometheus rules and config, Grafana dashboard.

No Docker engine runs here, so the image and compose files are checked by reading them:
they must agree with each other, with the Helm chart and with streamcl's CLI and settings
(same port, paths, user id, entrypoint, topics). The alert rules are checked and unit
tested with ``promtool`` (Debian package ``prometheus``); a missing promtool fails.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yaml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yaml"
DASHBOARD = DEPLOY / "grafana" / "streamcl-dashboard.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
CHART = ROOT / "helm" / "streamcl"

UID = 10001
PORT = 8080
CONFIG_PATH = "/etc/streamcl/config.yaml"
DATA_DIR = "/var/lib/streamcl"

# The metric contract (streamcl/metrics.py) the rules and the dashboard rely on.
METRICS = {
    "streamcl_events_total",
    "streamcl_events_learned_total",
    "streamcl_ready",
    "streamcl_prequential_accuracy",
    "streamcl_predict_latency_seconds",
    "streamcl_learn_batch_duration_seconds",
    "streamcl_model_version",
    "streamcl_drifts_total",
    "streamcl_last_drift_timestamp_seconds",
    "streamcl_consumer_lag",
    "streamcl_dead_letter_total",
    "streamcl_checkpoint_failures_total",
    "streamcl_checkpoints_total",
    "streamcl_memory_entries",
    "streamcl_memory_bytes",
    "streamcl_dormant_fraction",
    "streamcl_effective_rank",
    "streamcl_pending_labels",
    "streamcl_model_age_seconds",
    "streamcl_model_staleness_seconds",
    "streamcl_model_versions_published_total",
    "streamcl_model_versions_held_total",
    "streamcl_model_loads_total",
    "streamcl_prequential_accuracy_cumulative",
    "streamcl_prequential_mae",
    "streamcl_labels_total",
    "streamcl_predictor_weight",
    "streamcl_weight_magnitude",
}
METRIC_RE = re.compile(r"\bstreamcl_[a-z_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package 'prometheus'"
            " (apt-get install prometheus)"
        )
    return path


def metric_base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[tuple[str, list[str]]]:
    """(stage name, instructions) per stage; continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    stages: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, flags=re.IGNORECASE)
        if m:
            stages.append((m.group(1) or f"stage{len(stages)}", []))
        if stages:
            stages[-1][1].append(line)
    return stages


def instr(lines: list[str], keyword: str) -> list[str]:
    return [
        line[len(keyword) :].strip() for line in lines if line.upper().startswith(keyword + " ")
    ]


def final_stage() -> list[str]:
    return dockerfile_stages()[-1][1]


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(x, str) for x in parsed), value
    return parsed


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def test_dockerfile_is_multi_stage_with_cpu_torch():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build and runtime stages expected"
    names = [name for name, _ in stages]
    build_lines = " ".join(stages[0][1])
    assert re.search(r"download\.pytorch\.org/whl/cpu", build_lines)
    assert (
        re.search(r"TORCH_VERSION=2\.13\.0", build_lines)
        and '"torch==${TORCH_VERSION}"' in build_lines
    )
    final = final_stage()
    copies = instr(final, "COPY")
    assert any(re.match(rf"--from={names[0]}\s+/opt/venv\s+/opt/venv$", c) for c in copies), copies
    # nothing in the final stage installs or keeps compilers
    final_text = " ".join(final)
    for tool in (
        "build-essential",
        "gcc",
        "g++",
        "make ",
        "python3-dev",
        "pip install",
    ):
        assert tool not in final_text, f"final stage must not carry {tool!r}"
    assert "pip uninstall -y pip setuptools wheel" in build_lines


def test_dockerfile_runs_as_non_root_10001():
    final = final_stage()
    assert instr(final, "USER") == [f"{UID}:{UID}"]
    run = " ".join(instr(final, "RUN"))
    assert re.search(rf"groupadd\b.*--gid {UID} streamcl", run)
    assert re.search(rf"useradd\b.*--uid {UID} --gid {UID}", run)
    assert re.search(rf"chown {UID}:{UID} {DATA_DIR}", run)


def test_dockerfile_entrypoint_port_config_and_checkpoints_match_the_chart():
    final = final_stage()
    entrypoint = exec_form(instr(final, "ENTRYPOINT")[-1])
    cmd = exec_form(instr(final, "CMD")[-1])
    assert entrypoint[-1] == "streamcl", entrypoint
    assert cmd[0] == "run"
    values = chart_values()
    port = values["containerPorts"]["http"]
    assert port == PORT
    assert cmd == [
        "run",
        "--config",
        CONFIG_PATH,
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    statefulset = (CHART / "templates" / "statefulset.yaml").read_text(encoding="utf-8")
    chart_args = re.search(r"args:\n((?:\s+- .+\n)+)", statefulset)
    assert chart_args is not None
    rendered = [a.strip()[2:] for a in chart_args.group(1).splitlines()]
    assert rendered[:-1] == cmd[:-1], "chart args and image CMD differ"
    assert "command:" not in statefulset, "the chart must keep the image ENTRYPOINT"
    assert instr(final, "EXPOSE") == [str(port)]
    env = " ".join(instr(final, "ENV"))
    assert f"STREAMCL_CHECKPOINT__DIR={DATA_DIR}" in env
    assert values["persistence"]["mountPath"] == DATA_DIR
    assert instr(final, "VOLUME") == [f'["{DATA_DIR}"]']
    sc = values["containerSecurityContext"]
    assert sc["runAsUser"] == UID and sc["runAsGroup"] == UID
    assert values["podSecurityContext"]["fsGroup"] == UID
    assert any(c.endswith(f" {CONFIG_PATH}") for c in instr(final, "COPY"))
    health = " ".join(instr(final, "HEALTHCHECK"))
    assert f"http://127.0.0.1:{port}/healthz" in health


def test_dockerfile_copies_only_existing_paths_the_dockerignore_lets_through():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for stage_name, lines in dockerfile_stages():
        for copy in instr(lines, "COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _dest = copy.split()
            for src in sources:
                src = src.rstrip("/")
                assert src in allowed, (
                    f"{stage_name}: COPY {src} is excluded by Dockerfile.dockerignore"
                )
                assert (ROOT / src).exists(), (
                    f"{stage_name}: COPY source {src} does not exist in the repository"
                )


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_map(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_compose_services_and_dependencies(compose):
    services = compose["services"]
    assert set(services) >= {
        "kafka",
        "kafka-init",
        "streamcl-produce",
        "streamcl",
        "prometheus",
        "grafana",
    }
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep}"
        if isinstance(deps, dict):
            for dep, cond in deps.items():
                assert cond["condition"] in {
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully",
                }
                if cond["condition"] == "service_healthy":
                    assert "healthcheck" in services[dep], f"{dep} has no healthcheck to wait on"
    for name in ("streamcl", "streamcl-produce"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert services[name]["image"] == services["streamcl"]["image"]
    assert (
        services["streamcl"]["depends_on"]["kafka-init"]["condition"]
        == "service_completed_successfully"
    )
    assert (
        services["streamcl-produce"]["restart"] == "no"
        and services["kafka-init"]["restart"] == "no"
    )


def test_compose_kafka_runs_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    env = env_map(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert not any("ZOOKEEPER" in k for k in env), "KRaft mode: no ZooKeeper"
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_compose_streamcl_matches_image_chart_and_config(compose):
    services = compose["services"]
    svc = services["streamcl"]
    cmd = exec_form(instr(final_stage(), "CMD")[-1])
    assert svc["command"] == cmd
    assert svc["user"] == f"{UID}:{UID}"
    assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    assert svc["cap_drop"] == ["ALL"]
    assert f"{PORT}:{PORT}" in svc["ports"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts[DATA_DIR] in compose["volumes"], "checkpoints on a named volume"
    config_file = DEPLOY / mounts[CONFIG_PATH]
    assert config_file.is_file()
    env = env_map(svc)
    assert env["STREAMCL_CHECKPOINT__DIR"] == DATA_DIR
    kafka_env = env_map(services["kafka"])
    bootstrap = env["STREAMCL_KAFKA__BOOTSTRAP_SERVERS"]
    assert (
        bootstrap
        == dict(i.split("://", 1) for i in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))[
            "PLAINTEXT"
        ]
    )
    assert svc["stop_grace_period"] == f"{chart_values()['terminationGracePeriodSeconds']}s"
    assert f"http://127.0.0.1:{PORT}/readyz" in " ".join(svc["healthcheck"]["test"])

    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert config["source"]["kind"] == "kafka"
    produce = services["streamcl-produce"]["command"]
    assert produce[0] == "produce"
    assert option(produce, "--topic") == config["kafka"]["topic"]
    assert option(produce, "--bootstrap-servers") == bootstrap
    assert option(produce, "--data") == "builtin://elec2"
    assert option(produce, "--target") == config["source"]["target"]
    init = " ".join(services["kafka-init"]["command"])
    created = re.search(r"for topic in ([^;]+);", init)
    assert created is not None
    topics = set(created.group(1).split())
    for key in ("topic", "dead_letter_topic", "predictions_topic"):
        if key in config["kafka"]:
            assert config["kafka"][key] in topics, (
                f"kafka-init does not create {config['kafka'][key]}"
            )


def test_compose_config_is_accepted_by_streamcl_settings(compose, monkeypatch):
    from streamcl.settings import load_settings

    svc = compose["services"]["streamcl"]
    for key, value in env_map(svc).items():
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    settings = load_settings(DEPLOY / mounts[CONFIG_PATH])
    assert settings.source.kind == "kafka"
    assert str(settings.checkpoint.dir) == DATA_DIR
    assert settings.server.api_token is not None
    kafka = settings.kafka  # the contract: a kafka section with the fields compose sets
    assert kafka.bootstrap_servers in ("kafka:9092", ["kafka:9092"], ("kafka:9092",))
    assert kafka.topic == "streamcl.events"


def test_compose_prometheus_and_grafana_wiring(compose):
    services = compose["services"]
    prom = services["prometheus"]
    mounts = {
        v.split(":")[1]: DEPLOY / v.split(":")[0] for v in prom["volumes"] if v.startswith("./")
    }
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    assert mounts[config_path].resolve() == PROM_CONFIG
    prom_config = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    for rule_file in prom_config["rule_files"]:
        assert mounts[rule_file].resolve() == ALERTS
    (job,) = [j for j in prom_config["scrape_configs"] if j["job_name"] == "streamcl"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"streamcl:{PORT}"]

    graf = services["grafana"]
    gmounts = {
        v.split(":")[1]: DEPLOY / v.split(":")[0] for v in graf["volumes"] if v.startswith("./")
    }
    assert gmounts["/etc/grafana/provisioning"].resolve() == PROVISIONING
    ds = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yaml").read_text(encoding="utf-8")
    )
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    prom_port = prom["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{prom_port}"
    providers = yaml.safe_load(
        (PROVISIONING / "dashboards" / "streamcl.yaml").read_text(encoding="utf-8")
    )
    folder = providers["providers"][0]["options"]["path"]
    dashboard_mounts = [dest for dest, src in gmounts.items() if src.resolve() == DASHBOARD]
    assert dashboard_mounts and Path(dashboard_mounts[0]).parent == Path(folder)
    for svc in services.values():
        for vol in svc.get("volumes", []):
            if vol.startswith("./"):
                assert (DEPLOY / vol.split(":")[0]).exists(), f"compose mounts missing {vol}"


# --------------------------------------------------------------------------- CLI contract


def streamcl_bin() -> Path:
    exe = Path(sys.executable).parent / "streamcl"
    if not exe.exists():
        pytest.fail(
            f"the streamcl console script is missing ({exe}): pip install -e . into the venv"
        )
    return exe


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("run", ["--config", "--host", "--port"]),
        ("produce", ["--data", "--topic", "--bootstrap-servers", "--target"]),
    ],
)
def test_cli_takes_the_flags_the_image_chart_and_compose_pass(command, flags):
    out = subprocess.run(
        [str(streamcl_bin()), command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for flag in flags:
        assert flag in out.stdout, f"streamcl {command} --help does not list {flag}"


# --------------------------------------------------------------------------- Prometheus rules


def test_chart_and_deploy_alert_files_are_identical():
    assert (CHART / "files" / "alerts.yaml").read_bytes() == ALERTS.read_bytes()


def test_alert_rules_cover_the_required_conditions():
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "StreamclAccuracyLow",
        "StreamclConsumerLagGrowing",
        "StreamclNoEvents",
        "StreamclDriftStorm",
        "StreamclDeadLetterRate",
        "StreamclCheckpointFailures",
        "StreamclNeverReady",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        used = {metric_base(m) for m in METRIC_RE.findall(rule["expr"])}
        assert used <= METRICS, f"{name} uses metrics outside the contract: {used - METRICS}"


def test_promtool_check_rules():
    out = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    count = len([r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]])
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_promtool_unit_tests_fire_every_alert():
    out = subprocess.run(
        [promtool(), "test", "rules", str(ALERTS_TEST)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ALERTS_TEST.parent,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    fired = {
        c["alertname"] for t in tests["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]
    }
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert fired == {r["alert"] for g in rules["groups"] for r in g["rules"]}, (
        "every alert needs a firing test"
    )


def test_promtool_check_compose_prometheus_config(tmp_path):
    config = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [str(ALERTS)]
    local = tmp_path / "prometheus.yaml"
    local.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = subprocess.run(
        [promtool(), "check", "config", str(local)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


# --------------------------------------------------------------------------- Grafana


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panel_exprs(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in dashboard["panels"]
        if p["type"] != "row"
    }


def test_dashboard_layout(dashboard):
    assert dashboard["uid"] == "streamcl" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']} overlaps another"
                cells.add((x, y))
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"datasource", "job", "instance"}
    for p in dashboard["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"
                assert 'job=~"$job"' in t["expr"] and 'instance=~"$instance"' in t["expr"], t[
                    "expr"
                ]


def test_dashboard_shows_what_operators_need(dashboard):
    exprs = panel_exprs(dashboard)
    every = " ".join(e for es in exprs.values() for e in es)
    used = {metric_base(m) for m in METRIC_RE.findall(every)}
    assert used <= METRICS, used - METRICS
    for needed in (
        "streamcl_prequential_accuracy",
        "streamcl_events_total",
        "streamcl_consumer_lag",
        "streamcl_predict_latency_seconds",
        "streamcl_memory_bytes",
        "streamcl_memory_entries",
        "streamcl_dormant_fraction",
        "streamcl_effective_rank",
        "streamcl_ready",
        "streamcl_labels_total",
        "streamcl_predictor_weight",
        "streamcl_prequential_mae",
    ):
        assert needed in used, f"the dashboard shows no {needed}"
    accuracy = exprs["Windowed accuracy (drift markers)"]
    assert any("streamcl_prequential_accuracy" in e for e in accuracy)
    assert any("rate(streamcl_events_total" in e for e in exprs["Events/s by outcome"])
    assert any("histogram_quantile(0.99" in e for e in exprs["Predict latency"])
    drift = [a for a in dashboard["annotations"]["list"] if a.get("name") == "Drifts"]
    assert drift and drift[0]["enable"] and "streamcl_drifts_total" in drift[0]["expr"]


def test_readme_covers_install_kafka_scrape_and_dashboard():
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needle in (
        "helm install",
        "kafka.bootstrapServers",
        "kafka.existingSecret",
        "auth.existingSecret",
        "metrics.serviceMonitor.enabled",
        "metrics.prometheusRule.enabled",
        "streamcl-dashboard.json",
        "docker compose -f deploy/compose.yaml up",
        "/v1/predict",
    ):
        assert needle in text, f"deploy/README.md does not mention {needle}"
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            if line.strip() and not line.strip().startswith("#"):
                shlex.split(line.rstrip("\\"))  # every shown command at least tokenizes
