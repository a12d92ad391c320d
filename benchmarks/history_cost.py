"""What the dashboard's history recorder costs the stream loop, on elec2.

The loop calls ``History.record`` once per read chunk (``source.read_batch`` events). This
replays the packaged elec2 stream through the service's loop (``StreamLoop.step``, as
``streamcl replay`` does) and measures, in CPU seconds of this process
(``time.process_time``, so other processes on a loaded machine do not skew it), the time
spent inside ``record`` against the loop's total, for the default read size (512) and for
the worst case of one micro-batch per read (16 events). It also times ``History.to_dict``
(one ``GET /v1/history``) at the end.

Usage::

    python benchmarks/history_cost.py

Prints one line per read size, then a JSON object as the last line with, per read size,
``loop_cpu_s``, ``record_cpu_s``, ``record_share`` (target < 0.01), ``record_calls``,
``record_us_per_call``, ``points``; and ``to_dict_ms``, ``history_json_bytes``.
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import json
import time
from typing import Any

from streamcl.service import Service
from streamcl.settings import load_settings


def run(read_batch: int) -> dict[str, Any]:
    """Replay elec2 with ``read_batch`` events per read; CPU time of the loop and of record."""
    settings = load_settings(source={"read_batch": read_batch})
    service = Service(settings)
    loop, history = service.loop, service.loop.history
    spent = {"cpu": 0.0, "calls": 0}
    record = history.record

    def timed(*args: Any, **kwargs: Any) -> None:
        started = time.process_time()
        record(*args, **kwargs)
        spent["cpu"] += time.process_time() - started
        spent["calls"] += 1

    history.record = timed  # type: ignore[method-assign]
    started = time.process_time()
    assert service.source is not None
    while not service.source.exhausted:
        loop.step(timeout_s=0.0)
    total = time.process_time() - started
    t0 = time.perf_counter()
    body = history.to_dict()
    to_dict_ms = (time.perf_counter() - t0) * 1e3
    service.stop()
    return {
        "events": loop.events_handled,
        "loop_cpu_s": round(total, 3),
        "record_cpu_s": round(spent["cpu"], 4),
        "record_share": round(spent["cpu"] / total, 5),
        "record_calls": spent["calls"],
        "record_us_per_call": round(1e6 * spent["cpu"] / max(spent["calls"], 1), 1),
        "points": body["points"],
        "to_dict_ms": round(to_dict_ms, 2),
        "history_json_bytes": len(json.dumps(body)),
    }


def main() -> None:
    """Run both read sizes and print the figures."""
    out: dict[str, Any] = {}
    for read_batch in (512, 16):
        figures = run(read_batch)
        out[f"read_{read_batch}"] = figures
        print(f"read_batch={read_batch}: {figures}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
