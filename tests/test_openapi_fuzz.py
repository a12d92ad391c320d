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
