"""Settings: YAML file, environment overrides, clear errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcl.cli import main
from streamcl.errors import SettingsError
from streamcl.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_is_the_embedded_elec2_replay() -> None:
    s = load_settings(ROOT / "config" / "default.yaml")
    assert s.source.kind == "file"
    assert s.source.path == "builtin://elec2"
    assert s.source.target == "class"
    assert s.server.host == "127.0.0.1"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCL_LEARNER__BATCH_SIZE", "48")
    monkeypatch.setenv("STREAMCL_SERVER__PORT", "9999")
    s = load_settings(ROOT / "config" / "default.yaml")
    assert s.learner.batch_size == 48
    assert s.server.port == 9999


def test_invalid_setting_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("learner:\n  batch_size: 0\n")
    with pytest.raises(SettingsError, match=r"learner\.batch_size"):
        load_settings(cfg)


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lerner:\n  batch_size: 4\n")
    with pytest.raises(SettingsError, match="lerner"):
        load_settings(cfg)


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.learner.batch_size = 3  # type: ignore[misc]


def test_cli_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMCL_SERVER__PORT", "not-a-port")
    code = main(["run", "--config", str(ROOT / "config" / "default.yaml")])
    assert code == 2
    assert "server.port" in capsys.readouterr().err


def test_cli_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
