"""Settings: one frozen pydantic-settings model, from a YAML file plus environment.

Precedence (highest first): keyword arguments, ``STREAMCL_*`` environment variables
(nested with ``__``, e.g. ``STREAMCL_LEARNER__BATCH_SIZE=32``), the YAML file, defaults.
The sections live by role: :mod:`~streamcl.settings.inputs` (source, events, Kafka,
labels), :mod:`~streamcl.settings.learning` (learner, memory, drift, plasticity) and
:mod:`~streamcl.settings.service` (server, metrics, checkpoints, models, serve).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streamcl.errors import SettingsError
from streamcl.settings.inputs import (
    BUILTIN_ELEC2,
    EventSettings,
    KafkaSettings,
    LabelSettings,
    SourceSettings,
)
from streamcl.settings.learning import (
    DriftSettings,
    LearnerSettings,
    MemorySettings,
    PlasticitySettings,
)
from streamcl.settings.service import (
    CheckpointSettings,
    MetricsSettings,
    ModelSettings,
    ServerSettings,
    ServeSettings,
)

__all__ = [
    "BUILTIN_ELEC2",
    "CheckpointSettings",
    "DriftSettings",
    "EventSettings",
    "KafkaSettings",
    "LabelSettings",
    "LearnerSettings",
    "MemorySettings",
    "MetricsSettings",
    "ModelSettings",
    "PlasticitySettings",
    "ServeSettings",
    "ServerSettings",
    "Settings",
    "SourceSettings",
    "load_settings",
]


class Settings(BaseSettings):
    """All of streamcl's settings. Frozen; build one with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMCL_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    source: SourceSettings = SourceSettings()
    events: EventSettings = EventSettings()
    learner: LearnerSettings = LearnerSettings()
    metrics: MetricsSettings = MetricsSettings()
    plasticity: PlasticitySettings = PlasticitySettings()
    server: ServerSettings = ServerSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    kafka: KafkaSettings = KafkaSettings()
    labels: LabelSettings = LabelSettings()
    models: ModelSettings = ModelSettings()
    serve: ServeSettings = ServeSettings()

    @model_validator(mode="after")
    def _scaling_needs_kafka(self) -> Settings:
        lr = self.learner
        if lr.partitioning == "key":
            if self.source.kind != "kafka":
                raise ValueError("learner.partitioning: key needs source.kind: kafka")
            if self.checkpoint.dir is None and self.checkpoint.store is None:
                raise ValueError("learner.partitioning: key needs checkpoint.store (or .dir)")
            if self.kafka.labels_topic is not None:
                raise ValueError("learner.partitioning: key does not join delayed labels yet")
            if lr.standby:
                raise ValueError("learner.standby is for partitioning: none")
        if lr.standby and (self.source.kind != "kafka" or self.kafka.group_id is None):
            raise ValueError("learner.standby needs source.kind: kafka and a kafka.group_id")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments (the YAML file's content) lose to the environment."""
        return (env_settings, init_settings, file_secret_settings)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from an optional YAML file, the environment and overrides.

    Parameters
    ----------
    path
        YAML file whose top-level keys are the sections (``source``, ``learner``, ...).
    **overrides
        Sections given directly (tests); merged over the file, still below the environment.

    Raises
    ------
    SettingsError
        The file is missing or not a mapping, or a field is invalid; the message names
        every bad field by its dotted path (``learner.batch_size``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SettingsError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {p} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"config file {p} must hold a mapping of sections")
        data = dict(loaded or {})
    for key, value in overrides.items():
        base = data.get(key)
        data[key] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
