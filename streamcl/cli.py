"""Command line: ``streamcl run | serve | models | replay`` (and ``produce`` for Kafka demos).

Arguments are parsed in :func:`main`, never at import. Invalid settings, an unknown
``--target`` or ``--id-column`` exit with code 2 and a message naming it; an unreachable
Kafka exits with code 1 and one line naming the address. Third-party INFO logs (faiss's
loader, kafka-python's client) are off unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from streamcl.errors import CheckpointError, ModelVersionError, SettingsError, StoreError
from streamcl.metrics import package_version
from streamcl.settings import Settings, load_settings
from streamcl.threads import freeze_heap, single_threaded

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamcl", description="Online continual learner service.")
    p.add_argument("--version", action="version", version=f"streamcl {package_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="also third-party INFO logs")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service: stream loop + HTTP API")
    run.add_argument("--config", help="YAML settings file (default: built-in defaults)")
    run.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    run.add_argument("--port", type=int, help="HTTP port (default from settings: 8080)")
    run.add_argument(
        "--role",
        choices=("all", "learner"),
        default="all",
        help="all: learn and serve predictions (default); learner: learn and publish model "
        "versions, no /v1/predict (serving replicas answer)",
    )
    srv = sub.add_parser("serve", help="a stateless serving replica of published model versions")
    srv.add_argument("--config", help="YAML settings file (models.store is required)")
    srv.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    srv.add_argument("--port", type=int, help="HTTP port (default from settings: 8080)")
    mod = sub.add_parser("models", help="list, pin, unpin or roll back published model versions")
    mod.add_argument("action", choices=("list", "pin", "unpin", "rollback"))
    mod.add_argument("version", nargs="?", type=int, help="version to pin")
    mod.add_argument("--config", help="YAML settings file (models.store is required)")
    rep = sub.add_parser("replay", help="prequential evaluation of a file, no HTTP server")
    rep.add_argument("--data", required=True, help="CSV, CSV.gz or JSONL file, or builtin://elec2")
    rep.add_argument("--target", help="label column (default from settings)")
    rep.add_argument("--config", help="YAML settings file")
    rep.add_argument(
        "--report", help="write a report here: the dashboard as one HTML file (.html) or a PNG"
    )
    rep.add_argument("--limit", type=int, help="stop after this many events")
    pro = sub.add_parser("produce", help="load a CSV/JSONL file into Kafka as JSON events")
    pro.add_argument("--data", required=True, help="CSV, CSV.gz or JSONL file, or builtin://elec2")
    pro.add_argument("--topic", required=True, help="events topic")
    pro.add_argument("--bootstrap-servers", required=True, help="host:port[,host:port]")
    pro.add_argument("--target", default="class", help="label column of a CSV (default: class)")
    pro.add_argument("--id-column", help="id column of a CSV (default: the row number)")
    pro.add_argument("--id-prefix", default="", help="prepended to every event id")
    pro.add_argument("--labels-topic", help="send labels here, separately from the events")
    pro.add_argument("--label-delay", type=int, default=0, help="events between event and label")
    pro.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    pro.add_argument("--limit", type=int, help="stop after this many events")
    pro.add_argument("--config", help="YAML settings file: kafka security settings are used")
    top = sub.add_parser("topics", help="create Kafka topics (kafka-python's admin client)")
    top.add_argument("action", choices=["create"])
    top.add_argument("names", nargs="+", help="topic names")
    top.add_argument("--bootstrap-servers", required=True, help="host:port[,host:port]")
    top.add_argument("--partitions", type=int, default=1, help="partitions per topic")
    top.add_argument("--replication-factor", type=int, default=1)
    return p


#: Third-party loggers whose INFO lines are noise for a user (shown with --verbose).
NOISY = ("faiss", "faiss.loader", "kafka", "urllib3", "botocore", "matplotlib")


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        for name in NOISY:
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # we report failures ourselves


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamcl`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    single_threaded()  # before numpy, faiss or torch is imported
    _logging(args.verbose)
    try:
        if args.command == "run":
            settings = load_settings(args.config, **_server_overrides(args))
            return _run(settings, args.role)
        if args.command == "serve":
            settings = load_settings(args.config, **_server_overrides(args))
            return _serve(settings)
        if args.command == "models":
            return _models(load_settings(args.config), args.action, args.version)
        if args.command == "replay":
            source = {"kind": "file", "path": args.data}
            if args.target:
                source["target"] = args.target
            settings = load_settings(args.config, source=source)
            check_columns(args.data, settings.source.target, settings.source.id_column)
            return _replay(settings, args.report, args.limit)
        if args.command == "produce":
            check_columns(args.data, args.target or None, args.id_column)
            return _produce(args)
        if args.command == "topics":
            return _topics(args)
    except KafkaUnreachable as exc:
        print(f"streamcl: {exc}", file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        print(f"streamcl: checkpoint: {exc}", file=sys.stderr)
        return 2
    except (StoreError, ModelVersionError) as exc:
        print(f"streamcl: models: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. --report with an unknown suffix
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    return 1


class KafkaUnreachable(Exception):
    """No Kafka broker answered at the given address."""


def check_columns(path: str, target: str | None, id_column: str | None) -> None:
    """Check that a CSV file has the ``target`` and ``id_column`` columns.

    Raises
    ------
    SettingsError
        Naming the missing column and the columns that exist.
    FileNotFoundError
        The file does not exist.
    """
    from streamcl.connectors.files import FileSource

    source = FileSource(path)
    try:
        records = source.read(1)
    finally:
        source.close()
    if not records or not isinstance(records[0].value, dict):
        return  # JSONL: events carry their own label and id
    columns = [c for c in records[0].value if c is not None]
    for flag, name in (("--target", target), ("--id-column", id_column)):
        if name is not None and name not in columns:
            raise SettingsError(
                f"{flag} {name!r} is not a column of {path}; columns: {', '.join(columns)}"
            )


def _topics(args: argparse.Namespace) -> int:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    servers = [s.strip() for s in args.bootstrap_servers.split(",") if s.strip()]
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10_000)
    except KafkaError as exc:
        raise KafkaUnreachable(f"no Kafka broker at {args.bootstrap_servers} ({exc})") from None
    try:
        for name in args.names:
            try:
                admin.create_topics([NewTopic(name, args.partitions, args.replication_factor)])
                print(f"created {name} ({args.partitions} partitions)")
            except TopicAlreadyExistsError:
                print(f"exists  {name}")
    finally:
        admin.close()
    return 0


def _server_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    server: dict[str, object] = {}
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    return {"server": server} if server else {}


def _run(settings: Settings, role: str = "all") -> int:
    from streamcl.service import Service
    from streamcl.serving.api import create_app
    from streamcl.serving.httpserver import serve

    if role == "learner" and settings.models.store is None:
        raise SettingsError("models.store: the learner role publishes to a model store; set it")
    service = Service(settings)
    app = create_app(service, predict=role == "all")
    freeze_heap()  # what exists now lives as long as the process: the GC skips it
    host, port = settings.server.host, settings.server.port
    hint = "POST /v1/predict" if role == "all" else "GET /v1/models"
    print(f"streamcl: {role} on http://{host}:{port} (try GET /v1/model, {hint})", flush=True)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT (the lifespan stops the loop), then
    # re-raises the signal, so the exit status reports it (-15 for SIGTERM).
    serve(app, settings.server)
    return 0


def _serve(settings: Settings) -> int:
    from streamcl.metrics import Metrics
    from streamcl.models.announce import AnnouncementFollower
    from streamcl.models.registry import registry_from_settings
    from streamcl.models.version import model_fingerprint
    from streamcl.serving.httpserver import serve
    from streamcl.serving.replica import Replica
    from streamcl.serving.replica_app import create_replica_app

    registry = registry_from_settings(settings)
    if registry is None:
        raise SettingsError("models.store: a serving replica loads versions from a store; set it")
    replica = Replica(registry, model_fingerprint(settings), settings.serve, Metrics())
    follower = None
    topic = settings.models.announcements_topic
    if topic is not None:
        follower = AnnouncementFollower(settings.kafka, topic, registry.name, replica.announced)
    keyed = None
    if settings.learner.partitioning == "key":
        from streamcl.models.keys import KeyedVersions

        keyed = KeyedVersions(
            registry.store, registry.name, replica.fingerprint, settings.serve.poll_interval_s
        )
    app = create_replica_app(replica, settings, follower, keyed)
    freeze_heap()  # as in _run: a full collection need not walk torch and the modules
    host, port = settings.server.host, settings.server.port
    print(f"streamcl: serving replica on http://{host}:{port} ({registry.store.url})", flush=True)
    serve(app, settings.server)
    return 0


def _models(settings: Settings, action: str, version: int | None) -> int:
    from streamcl.models.registry import registry_from_settings

    registry = registry_from_settings(settings)
    if registry is None:
        raise SettingsError("models.store: not set; nothing is published")
    if action == "list":
        print(json.dumps(registry.listing(), indent=2, default=str))
    elif action == "pin":
        if version is None:
            raise SettingsError("models pin: give the VERSION to pin")
        print(json.dumps(registry.pin(version)))
    elif action == "unpin":
        registry.unpin()
        print(json.dumps({"pinned": None}))
    else:
        print(json.dumps(registry.rollback()))
    return 0


def _replay(settings: Settings, report: str | None, limit: int | None) -> int:
    from streamcl.replay import replay

    if limit is not None and limit < 1:
        raise SettingsError("--limit must be >= 1")
    result = replay(settings, report=report, limit=limit, progress=sys.stderr.isatty(), freeze=True)
    print(json.dumps(result))
    return 0


def _produce(args: argparse.Namespace) -> int:
    from streamcl.connectors.kafka_config import client_config
    from streamcl.produce import load_events, produce_events

    if args.label_delay < 0:
        raise SettingsError("--label-delay must be >= 0")
    extra = {}
    if args.config:
        extra = client_config(load_settings(args.config).kafka)
        extra.pop("bootstrap_servers", None)
    events = load_events(
        args.data,
        target=args.target or None,
        id_column=args.id_column,
        id_prefix=args.id_prefix,
        limit=args.limit,
    )
    from kafka.errors import KafkaError

    try:
        sent = produce_events(
            events,
            args.topic,
            args.bootstrap_servers,
            labels_topic=args.labels_topic,
            label_delay=args.label_delay,
            rate=args.rate,
            producer_config=extra,
            progress=sys.stderr.isatty(),
        )
    except KafkaError as exc:
        raise KafkaUnreachable(
            f"cannot produce to Kafka at {args.bootstrap_servers}: {exc}"
        ) from None
    print(json.dumps({"topic": args.topic, "labels_topic": args.labels_topic, **sent}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
