"""schemathesis with every check (`--checks all`) against a live server: 0 failures.

Schema-valid bodies may still be refused by what the spec cannot say: the feature schema
the model learned (422) and ids already seen (409); the config says so for
``positive_data_acceptance``. The run is short: few examples, a fixed seed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from live_server import live_server

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[parameters]
"path.model_name" = "streamcl"
"""


def test_schemathesis_checks_all_finds_no_failure(tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    cli = shutil.which("schemathesis") or str(Path(__file__).parents[1] / ".venv/bin/schemathesis")
    with live_server(learn=200, api_token="tok") as (url, _):
        run = subprocess.run(
            [
                cli,
                "--config-file",
                str(tmp_path / "schemathesis.toml"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--seed",
                "7",
                "--max-examples",
                "10",
                "-H",
                "Authorization: Bearer tok",
                "--workers",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "passed" in out and "failed" not in out.split("SUMMARY")[-1], out[-6000:]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_spec_documents_errors_security_and_media_types() -> None:
    from fastapi.testclient import TestClient

    from streamcl.service import Service
    from streamcl.serving.api import create_app
    from streamcl.settings import load_settings

    app = create_app(Service(load_settings(source={"kind": "none"})))
    spec = TestClient(app).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):  # no dangling $ref
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            errors = {c: r for c, r in op["responses"].items() if c.startswith("4")}
            assert {"404", "405"} <= set(errors), (path, method)
            for r in errors.values():
                (schema,) = [c["schema"] for c in r["content"].values()]
                assert schema["$ref"].endswith("ErrorBody"), (path, method)
            mutating = method == "post" and path not in (
                "/v1/predict",
                "/v2/models/{model_name}/infer",
            )
            assert (op.get("security") == [{"bearer": []}]) == mutating, (path, method)
            if mutating:
                assert {"401", "403"} <= set(errors)
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    events = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    event = events["schema"]["properties"]["events"]["items"]
    assert "id" in event["required"] and "features" in event["required"]
