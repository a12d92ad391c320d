"""Command line: ``streamcl run | replay`` (and ``produce`` for Kafka demos).

Arguments are parsed in :func:`main`, never at import. Invalid settings exit with code 2
and a message naming the field.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from streamcl.errors import CheckpointError, SettingsError
from streamcl.settings import Settings, load_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamcl", description="Online continual learner service.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the service: stream loop + HTTP API")
    run.add_argument("--config", help="YAML settings file (default: built-in defaults)")
    run.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    run.add_argument("--port", type=int, help="HTTP port (default from settings: 8080)")
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamcl`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            settings = load_settings(args.config, **_server_overrides(args))
            return _run(settings)
        if args.command == "replay":
            source = {"kind": "file", "path": args.data}
            if args.target:
                source["target"] = args.target
            settings = load_settings(args.config, source=source)
            return _replay(settings, args.report, args.limit)
        if args.command == "produce":
            return _produce(args)
    except SettingsError as exc:
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        print(f"streamcl: checkpoint: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. --report with an unknown suffix
        print(f"streamcl: {exc}", file=sys.stderr)
        return 2
    return 1


def _server_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    server: dict[str, object] = {}
    if args.host:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    return {"server": server} if server else {}


def _run(settings: Settings) -> int:
    import uvicorn

    from streamcl.service import Service
    from streamcl.serving.api import create_app

    service = Service(settings)
    app = create_app(service)
    host, port = settings.server.host, settings.server.port
    print(
        f"streamcl: serving on http://{host}:{port} (try GET /v1/model, POST /v1/predict)",
        flush=True,
    )
    # uvicorn shuts down gracefully on SIGTERM/SIGINT (the lifespan stops the loop), then
    # re-raises the signal, so the exit status reports it (-15 for SIGTERM).
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


def _replay(settings: Settings, report: str | None, limit: int | None) -> int:
    from streamcl.replay import replay

    result = replay(settings, report=report, limit=limit, progress=sys.stderr.isatty())
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
    sent = produce_events(
        events,
        args.topic,
        args.bootstrap_servers,
        labels_topic=args.labels_topic,
        label_delay=args.label_delay,
        rate=args.rate,
        producer_config=extra,
    )
    print(json.dumps({"topic": args.topic, "labels_topic": args.labels_topic, **sent}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
