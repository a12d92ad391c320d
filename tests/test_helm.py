"""The Helm chart (helm/streamcl), rendered and linted by Helm's own engine.

Helm's engine comes from the ``helm-python-sdk`` package (import ``helm_python``), which
ships libhelm_c (Helm v4's Go SDK); every rendered manifest is validated offline against
the Kubernetes OpenAPI schemas that ``kubernetes-validate`` ships. The Prometheus Operator
CRDs (ServiceMonitor, PrometheusRule) have no schema there, so their structure is checked
here by hand.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import helm_python as helm
    from helm_python.errors import HelmValuesError
except ImportError as exc:  # CI installs it: a missing engine is a failure, not a skip.
    raise ImportError(
        "tests/test_helm.py needs Helm's engine: pip install helm-python-sdk kubernetes-validate"
    ) from exc
try:
    import kubernetes_validate
except ImportError as exc:
    raise ImportError(
        "tests/test_helm.py needs kubernetes-validate: pip install kubernetes-validate"
    ) from exc

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "streamcl"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
KUBE_VERSION = "1.33.0"
RELEASE = "demo"
NAMESPACE = "ml"
CRD_GROUP = "monitoring.coreos.com/v1"
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render_files(chart, values: dict[str, Any] | None = None) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders for ``values``, parsed; NOTES.txt excluded."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_files(chart, values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                docs.append(doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["streamcl"]
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def check_service_monitor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == CRD_GROUP
    spec = doc["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert spec["endpoints"], "a ServiceMonitor needs at least one endpoint"
    for ep in spec["endpoints"]:
        assert ep["port"] == "http" and ep["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", ep[key]), (key, ep[key])


def check_prometheus_rule(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == CRD_GROUP
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert isinstance(group["name"], str) and group["name"]
        assert group["rules"], f"group {group['name']} has no rules"
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert set(rule) <= {
                "alert",
                "record",
                "expr",
                "for",
                "labels",
                "annotations",
                "keep_firing_for",
            }
            if "for" in rule:
                assert re.fullmatch(r"[0-9]+(ms|s|m|h)", rule["for"]), rule["for"]


def validate_all(docs: list[dict[str, Any]]) -> None:
    """Validate every manifest: Kubernetes kinds by schema (strict), CRDs by structure."""
    assert docs
    for doc in docs:
        meta = doc["metadata"]
        assert (
            re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
        )
        for label in STANDARD_LABELS:
            assert meta["labels"].get(label), f"{doc['kind']} {meta['name']} lacks label {label}"
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc)
        elif doc["kind"] == "PrometheusRule":
            check_prometheus_rule(doc)
        else:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:  # pragma: no cover - message only
                pytest.fail(
                    f"{doc['kind']} {meta['name']} is invalid: {exc.message} at {list(exc.path)}"
                )


SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
            },
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "additionalRules": [{"alert": "Extra", "expr": "vector(1) > 0", "for": "1m"}],
            },
        }
    },
    "persistence-off": {"persistence": {"enabled": False}},
    "existing-claim": {"persistence": {"existingClaim": "streamcl-data"}},
    "existing-secrets": {
        "auth": {"existingSecret": "streamcl-api"},
        "kafka": {
            "bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092",
            "existingSecret": "kafka-creds",
            "existingSecretUsernameKey": "user",
            "existingSecretPasswordKey": "password",
            "tls": {"existingSecret": "kafka-ca"},
        },
        "config": {
            "source": {"kind": "kafka"},
            "kafka": {
                "topic": "elec2",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
            },
        },
    },
    "custom-resources-and-image": {
        "global": {"imageRegistry": "registry.example.com"},
        "image": {
            "repository": "ml/streamcl",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
            "pullSecrets": ["regcred"],
        },
        "resources": {
            "requests": {"cpu": "2", "memory": "3Gi"},
            "limits": {"cpu": "4", "memory": "6Gi"},
        },
        "service": {"type": "NodePort", "nodePorts": {"http": 30080}},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "commonLabels": {"team": "ml"},
        "commonAnnotations": {"owner": "ml-platform"},
        "extraEnvVars": [{"name": "STREAMCL_LEARNER__LR", "value": "0.005"}],
        "extraEnvVarsSecret": "streamcl-extra",
    },
    "probes-off": {
        "livenessProbe": {"enabled": False},
        "readinessProbe": {"enabled": False},
        "startupProbe": {"enabled": False},
        "pdb": {"create": False},
        "serviceAccount": {"create": False},
    },
    "existing-configmap": {
        "existingConfigmap": "my-streamcl-config",
        "fullnameOverride": "learner",
    },
    "serving-s3-hpa": {
        "serving": {
            "enabled": True,
            "replicaCount": 3,
            "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
        },
        "modelStore": {
            "type": "s3",
            "s3": {
                "bucket": "ml-models",
                "endpoint": "http://minio.storage:9000",
                "existingSecret": "s3-creds",
            },
        },
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "serving-rwx-volume": {
        "serving": {"enabled": True, "replicaCount": 3},
        "modelStore": {"type": "volume", "volume": {"storageClass": "nfs"}},
    },
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_is_valid(chart, scenario):
    validate_all(render(chart, SCENARIOS[scenario]))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_is_clean(scenario):
    report = helm.lint(CHART, SCENARIOS[scenario], strict=True, namespace=NAMESPACE)
    assert report["errors"] == [], report
    severe = [m for m in report["messages"] if m["severity"] >= 2]
    assert severe == [], severe


def test_default_objects(chart):
    docs = render(chart)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(docs, "Service")}
    assert set(services) == {"demo-streamcl", "demo-streamcl-headless"}
    assert services["demo-streamcl-headless"]["clusterIP"] == "None"
    assert services["demo-streamcl"]["ports"][0]["port"] == 8080
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "demo-streamcl-headless"
    selector = sts["spec"]["selector"]["matchLabels"]
    for svc in services.values():
        assert svc["selector"] == selector
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_statefulset_is_secure_by_default(chart):
    docs = render(chart)
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60
    c = container(docs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001 and sc["runAsGroup"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "read-only root FS needs a writable /tmp"
    assert mounts["/var/lib/streamcl"] == "data"
    assert c["resources"]["limits"]["memory"] == "2Gi"


def test_container_runs_the_service_with_probes(chart):
    c = container(render(chart))
    assert c["args"] == [
        "run",
        "--config",
        "/etc/streamcl/config.yaml",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert "command" not in c, "the image's entrypoint (streamcl) must stay in charge"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert env_of(c)["STREAMCL_CHECKPOINT__DIR"]["value"] == "/var/lib/streamcl"
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/streamcl/config.yaml")
    assert mount["subPath"] == "config.yaml" and mount["readOnly"] is True


def test_probes_can_be_disabled_one_by_one(chart):
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        c = container(render(chart, {probe: {"enabled": False}}))
        assert probe not in c
        others = {"livenessProbe", "readinessProbe", "startupProbe"} - {probe}
        assert others <= set(c)
        assert all("enabled" not in c[o] for o in others)
    docs = render(chart, SCENARIOS["probes-off"])
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container(docs))
    assert by_kind(docs, "PodDisruptionBudget") == [] and by_kind(docs, "ServiceAccount") == []
    assert one(docs, "StatefulSet")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def test_persistence_claim_templates_and_switches(chart):
    sts = one(render(chart), "StatefulSet")
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["metadata"]["name"] == "data"
    assert vct["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in vct["spec"]
    assert "data" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}

    off = one(render(chart, SCENARIOS["persistence-off"]), "StatefulSet")
    assert "volumeClaimTemplates" not in off["spec"]
    volumes = {v["name"]: v for v in off["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}

    claim = one(render(chart, SCENARIOS["existing-claim"]), "StatefulSet")
    assert "volumeClaimTemplates" not in claim["spec"]
    volumes = {v["name"]: v for v in claim["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "streamcl-data"}

    for cls, expected in (("fast-ssd", "fast-ssd"), ("-", "")):
        sts = one(
            render(chart, {"persistence": {"storageClass": cls, "size": "10Gi"}}),
            "StatefulSet",
        )
        spec = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        assert spec["storageClassName"] == expected
        assert spec["resources"]["requests"]["storage"] == "10Gi"


def test_config_map_holds_values_config_and_streamcl_accepts_it(chart, tmp_path):
    values = chart.values
    docs = render(chart)
    cm = one(docs, "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config == values["config"]
    volumes = {
        v["name"]: v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]

    from streamcl.settings import load_settings

    config_file = tmp_path / "config.yaml"
    config_file.write_text(cm["data"]["config.yaml"], encoding="utf-8")
    settings = load_settings(config_file)
    assert settings.source.kind == values["config"]["source"]["kind"]
    assert settings.source.path == "builtin://elec2"


def test_config_checksum_restarts_pods_on_change(chart):
    files = render_files(chart)
    cm_text = files["streamcl/templates/configmap.yaml"]
    sts = one(render(chart), "StatefulSet")
    checksum = sts["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum == hashlib.sha256(cm_text.encode()).hexdigest()

    changed = one(render(chart, {"config": {"learner": {"batch_size": 48}}}), "StatefulSet")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
    unrelated = one(render(chart, {"resources": {"limits": {"memory": "3Gi"}}}), "StatefulSet")
    assert unrelated["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == checksum

    docs = render(chart, SCENARIOS["existing-configmap"])
    assert by_kind(docs, "ConfigMap") == []
    pod = one(docs, "StatefulSet")["spec"]["template"]
    assert "checksum/config" not in (pod["metadata"].get("annotations") or {})
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "my-streamcl-config"
    assert one(docs, "StatefulSet")["metadata"]["name"] == "learner"


def test_secrets_are_referenced_never_inlined(chart):
    docs = render(chart, SCENARIOS["existing-secrets"])
    assert by_kind(docs, "Secret") == []
    c = container(docs)
    env = env_of(c)
    assert env["STREAMCL_SERVER__API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "streamcl-api",
        "key": "api-token",
    }
    assert env["STREAMCL_KAFKA__SASL_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-creds",
        "key": "user",
    }
    assert env["STREAMCL_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kafka-creds",
        "key": "password",
    }
    assert (
        env["STREAMCL_KAFKA__BOOTSTRAP_SERVERS"]["value"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    )
    assert env["STREAMCL_KAFKA__SSL_CAFILE"]["value"] == "/etc/streamcl/kafka-tls/ca.crt"
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kafka-tls"]["secret"] == {"secretName": "kafka-ca"}
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["source"]["kind"] == "kafka" and config["kafka"]["topic"] == "elec2"

    plain = env_of(container(render(chart)))
    assert not {
        "STREAMCL_SERVER__API_TOKEN",
        "STREAMCL_KAFKA__SASL_PASSWORD",
        "STREAMCL_KAFKA__SASL_USERNAME",
    } & set(plain)


def test_custom_image_resources_and_service(chart):
    docs = render(chart, SCENARIOS["custom-resources-and-image"])
    c = container(docs)
    assert c["image"] == "registry.example.com/ml/streamcl@sha256:" + "ab" * 32
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"] == {
        "requests": {"cpu": "2", "memory": "3Gi"},
        "limits": {"cpu": "4", "memory": "6Gi"},
    }
    assert env_of(c)["STREAMCL_LEARNER__LR"]["value"] == "0.005"
    assert c["envFrom"] == [{"secretRef": {"name": "streamcl-extra"}}]
    pod = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "demo-streamcl")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "ml"
        assert doc["metadata"]["annotations"]["owner"] == "ml-platform"

    tagged = container(render(chart, {"image": {"tag": "1.2.3"}}))
    assert tagged["image"] == "ghcr.io/streamcl/streamcl:1.2.3"
    default = container(render(chart))
    assert default["image"] == f"ghcr.io/streamcl/streamcl:{chart.metadata['appVersion']}"


def test_monitoring_crds_are_off_by_default_and_render_when_enabled(chart):
    docs = render(chart)
    assert by_kind(docs, "ServiceMonitor") == [] and by_kind(docs, "PrometheusRule") == []

    docs = render(chart, SCENARIOS["monitoring"])
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["interval"] == "30s"
    svc = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "demo-streamcl")
    for key, value in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][key] == value
    assert svc["spec"]["ports"][0]["name"] == sm["spec"]["endpoints"][0]["port"]

    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    assert groups["demo-streamcl-additional"]["rules"] == [
        {"alert": "Extra", "expr": "vector(1) > 0", "for": "1m"}
    ]


def test_prometheus_rule_carries_the_same_alerts_as_deploy(chart):
    """The chart's PrometheusRule and deploy/prometheus/alerts.yaml hold the same rules."""
    rule = one(
        render(chart, {"metrics": {"prometheusRule": {"enabled": True}}}),
        "PrometheusRule",
    )
    deploy = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))

    def names(groups):
        return sorted(r["alert"] for g in groups for r in g["rules"] if "alert" in r)

    assert names(rule["spec"]["groups"]) == names(deploy["groups"])
    assert len(names(deploy["groups"])) >= 6
    assert rule["spec"]["groups"] == deploy["groups"]


def test_notes_show_how_to_predict_and_scrape(chart):
    notes = render_files(chart)["streamcl/templates/NOTES.txt"]
    assert "kubectl -n ml port-forward svc/demo-streamcl 8080:8080" in notes
    assert "curl -s http://127.0.0.1:8080/v1/predict" in notes
    body = re.search(r"-d '(\{.*\})'", notes)
    assert body is not None
    assert yaml.safe_load(body.group(1))["instances"][0]["features"]["nswprice"] == 0.05
    assert "curl -s http://127.0.0.1:8080/metrics" in notes
    with_secret = render_files(chart, SCENARIOS["existing-secrets"])["streamcl/templates/NOTES.txt"]
    assert "get secret streamcl-api" in with_secret


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"podAntiAffinityPreset": "always"}, "/podAntiAffinityPreset"),
        ({"containerPorts": {"http": 0}}, "/containerPorts/http"),
        ({"service": {"ports": {"http": 70000}}}, "/service/ports/http"),
        ({"service": {"ports": {"http": "http"}}}, "/service/ports/http"),
        ({"service": {"type": "ExternalName"}}, "/service/type"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"persistence": {"size": "lots"}}, "/persistence/size"),
        ({"terminationGracePeriodSeconds": 5}, "/terminationGracePeriodSeconds"),
        ({"config": {"source": {"kind": "socket"}}}, "/config/source/kind"),
        ({"config": {"server": {"api_token": "s3cret"}}}, "/config/server/api_token"),
        ({"kafka": {"bootstrapServers": "kafka"}}, "/kafka/bootstrapServers"),
        ({"replicas": 1}, "replicas"),
    ],
)
def test_schema_rejects_bad_values_at_render(chart, values, where):
    with pytest.raises(HelmValuesError) as info:
        render_files(chart, values)
    assert where in str(info.value)
    report = helm.lint(CHART, values, namespace=NAMESPACE)
    assert any(where in e for e in report["errors"]), report


KEYED = {
    "replicaCount": 3,
    "config": {
        "source": {"kind": "kafka"},
        "kafka": {"bootstrap_servers": "k:9092", "assignment": "cooperative_sticky"},
        "learner": {"partitioning": "key"},
        "checkpoint": {"store": "s3://models/checkpoints"},
    },
}


def test_three_learners_with_per_key_models_spread_over_nodes(chart):
    docs = {d["kind"]: d for d in render(chart, KEYED)}
    sts = docs["StatefulSet"]
    assert sts["spec"]["replicas"] == 3
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    hard = render(chart, {**KEYED, "podAntiAffinityPreset": "hard"})
    spec = next(d for d in hard if d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in spec["affinity"]["podAntiAffinity"]
    single = next(d for d in render(chart) if d["kind"] == "StatefulSet")
    assert "affinity" not in single["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"replicaCount": 2}, "partitioning: key"),
        ({**KEYED, "config": {**KEYED["config"], "checkpoint": {}}}, "config.checkpoint.store"),
        (
            {"replicaCount": 2, "config": {"learner": {"standby": True}}},
            "persistence.existingClaim",
        ),
    ],
)
def test_several_learners_need_partitioning_or_standby_on_shared_storage(chart, values, reason):
    with pytest.raises(helm.HelmError, match=re.escape(reason)):
        render_files(chart, values)


def test_hot_standby_pair_renders_on_a_shared_claim(chart):
    values = {
        "replicaCount": 2,
        "config": {"learner": {"standby": True}},
        "persistence": {"existingClaim": "learner-rwx"},
    }
    assert (
        next(d for d in render(chart, values) if d["kind"] == "StatefulSet")["spec"]["replicas"]
        == 2
    )


def test_kafka_source_needs_bootstrap_servers(chart):
    with pytest.raises(helm.HelmError, match=r"set kafka\.bootstrapServers"):
        render_files(chart, {"config": {"source": {"kind": "kafka"}}})
    via_config = {
        "config": {
            "source": {"kind": "kafka"},
            "kafka": {"bootstrap_servers": "k:9092"},
        }
    }
    assert "StatefulSet" in {d["kind"] for d in render(chart, via_config)}


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict) or not node:
        return [prefix]
    keys: list[str] = []
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if path in {"config", "resources", "persistence.accessModes"}:
            keys.append(path)
        else:
            keys.extend(_leaf_keys(value, path))
    return keys


def test_every_value_is_documented_and_in_the_schema(chart):
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## @param (\S+) ", text, flags=re.MULTILINE))
    leaves = _leaf_keys(chart.values)
    missing = [
        k
        for k in leaves
        if k not in documented and not any(k.startswith(d + ".") for d in documented)
    ]
    assert missing == [], f"values without an @param line: {missing}"
    stale = [
        d
        for d in documented
        if not any(k == d or k.startswith(d + ".") or d.startswith(k + ".") for k in leaves)
    ]
    assert stale == [], f"@param lines for keys values.yaml lacks: {stale}"
    schema = chart.schema
    assert schema is not None
    assert set(chart.values) <= set(schema["properties"])
    assert "maximum" not in schema["properties"]["replicaCount"]
    assert "one process owns a model's state" in text.lower()


def _serving(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


def test_serving_renders_learner_statefulset_and_replica_deployment(chart, tmp_path):
    docs = render(chart, SCENARIOS["serving-s3-hpa"])
    sts, dep, hpa = one(docs, "StatefulSet"), _serving(docs), one(docs, "HorizontalPodAutoscaler")
    assert sts["spec"]["replicas"] == 1
    assert container(docs)["args"][0] == "run"
    assert container(docs)["args"][-2:] == ["--role", "learner"]
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    serving = dep["spec"]["template"]["spec"]["containers"][0]
    assert serving["args"][0] == "serve"
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for c in (container(docs), serving):
        env = env_of(c)
        assert env["STREAMCL_MODELS__S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "s3-creds",
            "key": "secret-access-key",
        }
    learner_sel = sts["spec"]["selector"]["matchLabels"]
    serving_sel = dep["spec"]["selector"]["matchLabels"]
    assert learner_sel != serving_sel
    services = {s["metadata"]["name"]: s["spec"]["selector"] for s in by_kind(docs, "Service")}
    assert services["demo-streamcl"] == serving_sel  # predictions -> replicas
    assert services["demo-streamcl-admin"] == learner_sel  # admin and ingest -> learner
    pdbs = {p["metadata"]["name"]: p["spec"] for p in by_kind(docs, "PodDisruptionBudget")}
    assert pdbs["demo-streamcl-serving"]["selector"]["matchLabels"] == serving_sel
    assert pdbs["demo-streamcl-serving"]["minAvailable"] == 1
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["models"]["store"] == "s3://ml-models/models"
    assert config["models"]["s3_endpoint_url"] == "http://minio.storage:9000"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    from streamcl.settings import load_settings

    settings = load_settings(path)
    assert settings.models.store == "s3://ml-models/models" and settings.serve.max_staleness_s == 30


def test_serving_on_a_read_write_many_claim(chart):
    docs = render(chart, SCENARIOS["serving-rwx-volume"])
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    dep = _serving(docs)
    assert dep["spec"]["replicas"] == 3
    claim = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}["models"]
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    sts_volumes = {
        v["name"]: v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    }
    assert sts_volumes["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["models"]["store"] == "/var/lib/streamcl-models"


def test_serving_with_s3_needs_a_bucket(chart):
    with pytest.raises(Exception, match=r"modelStore\.s3\.bucket"):
        render(chart, {"serving": {"enabled": True}})
