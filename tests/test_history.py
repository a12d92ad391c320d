"""The loop's history (GET /v1/history), the dashboard routes and the report's HTML."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sources import ListSource, elec2_rows

from streamcl.cli import main
from streamcl.report import render_html, write_report
from streamcl.service import Service
from streamcl.serving import dashboard
from streamcl.serving.api import create_app
from streamcl.serving.dashboard import HistoryResponse
from streamcl.settings import load_settings
from streamcl.stream.history import SERIES, History
from streamcl.stream.scores import PrequentialScore, RegressionScore


def _elec2_service(
    n: int, read_batch: int, delta: float = 0.002, noise_from: int | None = None
) -> Service:
    rows = [dict(r, id=str(i)) for i, r in enumerate(elec2_rows(n))]
    coin = random.Random(0)
    for r in rows[noise_from:] if noise_from is not None else []:  # labels become coin flips
        r["class"] = str(coin.randint(0, 1))
    rows.append(dict(rows[-1], id="bad", nswprice="abc"))  # dead-lettered: type_mismatch
    source = {"kind": "file", "id_column": "id", "read_batch": read_batch}
    learner = {"drift": {"delta": delta}}
    return Service(load_settings(source=source, learner=learner), source=ListSource(rows))


def _run(service: Service) -> None:
    assert service.source is not None
    while not service.source.exhausted:
        service.loop.step(timeout_s=0.0)


@pytest.fixture(scope="module")
def elec2_run() -> Service:
    """3,000 elec2 events, their labels coin flips from event 2,000 on, and a bad one, read
    64 at a time.

    The error rises from ~0.11 to ~0.5 and stays there, a loss drift whatever the experts:
    whether elec2's own first 3,000 events hold one depends on the experts and the
    micro-batch (none with the linear expert at ADWIN's default delta, none with the tree
    expert at delta 0.02); labels flipped (1 - y) are followed within a few events by the
    temporal expert and the short-term memory, and hold none either.
    """
    service = _elec2_service(3_000, read_batch=64, noise_from=2_000)
    service.loop.history = History(points=16, every=1)
    _run(service)
    return service


def test_points_stay_bounded_and_evenly_spaced(elec2_run: Service) -> None:
    h = elec2_run.loop.history.to_dict()
    assert 8 <= h["points"] < 16  # 47 reads, halved twice
    events = h["series"]["events"]
    assert events[0] == 64  # the first point survives every halving
    gaps = {b - a for a, b in itertools.pairwise(events[:-1])}
    assert gaps == {h["every_events"]} == {64 * 4}  # 64-event reads: 1, 2, then 4 per point
    assert 0 < events[-1] - events[-2] <= 64 * 4  # the last read is short (3,000 = 46 * 64 + 56)
    for columns in (h["series"], h["weights"], h["health"]):
        assert all(len(c) == h["points"] for c in columns.values())
    assert set(h["series"]) == set(SERIES)
    assert set(h["weights"]) == set(elec2_run.learner.weights())
    HistoryResponse.model_validate(h)


def test_series_follow_the_scores(elec2_run: Service) -> None:
    loop = elec2_run.loop
    loop.history.record(loop, force=True)
    s = loop.history.to_dict()["series"]
    assert s["events"][-1] == 3_000 and s["scored"][-1] == 3_000
    assert s["score"][-1] == loop.score.window_accuracy
    assert s["cumulative"][-1] == loop.score.accuracy
    assert s["baseline_cumulative"][-1] == pytest.approx(loop.score.no_change_correct / 3_000)
    assert s["version"][-1] == loop.learner.version == s["served_version"][-1]
    assert s["consumer_lag"][-1] is None  # no Kafka here: unknown, not 0
    assert s["rejected"][-1] == 1
    assert loop.history.to_dict()["totals"]["dead_letters"] == {"type_mismatch": 1.0}
    assert all(v is None or v > 0 for v in s["events_per_s"])


def test_drifts_are_logged_with_their_recovery(elec2_run: Service) -> None:
    learner = elec2_run.learner
    drifts = elec2_run.loop.history.to_dict()["drifts"]
    counts: dict[str, int] = {}
    for d in drifts:
        counts[d["detector"]] = counts.get(d["detector"], 0) + 1
        assert 0 <= d["change_point"] <= d["event"] <= 3_000
    assert counts == {k: v for k, v in learner.drift.counts.items() if v}
    loss = [d for d in drifts if d["detector"] == "loss"]
    assert loss, "elec2 has a loss drift in its first 3,000 events"
    last = loss[-1]
    r = learner.recovery
    assert last["pre_drift_accuracy"] == r.pre_level
    assert last["worst_accuracy"] == r.worst
    assert last["stability_gap"] == pytest.approx(r.pre_level - r.worst)
    assert last["recovery_events"] == r.recovery_events


def _fake_learner(counts: dict[str, int], log: list[Any]) -> Any:
    recovery = SimpleNamespace(pre_level=None, worst=None, recovery_events=None)
    return SimpleNamespace(drift=SimpleNamespace(counts=counts, log=log), recovery=recovery)


def _record(detector: str, event: int, window: int = 0) -> Any:
    return SimpleNamespace(
        event=event,
        time=1.0,
        event_id=str(event),
        detector=detector,
        kind="adwin",
        statistic=float("nan"),
        window=window,
    )


def test_drift_rows_survive_a_short_log_and_a_reset() -> None:
    h = History(points=4)
    log = [_record("loss", 10 * i, window=5) for i in range(3)]
    h._track_drifts(_fake_learner({"loss": 5}, log))  # 5 drifts, the log holds the last 3
    assert [d["event"] for d in h.drifts] == [0, 10, 20]
    assert h.drifts[1]["change_point"] == 5 and h.drifts[0]["change_point"] == 0
    assert h.drifts[0]["statistic"] is None  # NaN is not JSON
    h._track_drifts(_fake_learner({}, []))  # the learner was reset
    h._track_drifts(_fake_learner({"input": 2}, [_record("input", 1), _record("input", 2)]))
    assert [d["event"] for d in h.drifts] == [10, 20, 1, 2]  # bounded by points


def test_history_over_http_and_openapi() -> None:
    settings = load_settings(source={"kind": "none"})
    with TestClient(create_app(Service(settings))) as client:
        empty = client.get("/v1/history").json()
        assert empty["available"] and empty["points"] == 0
        events = [
            {"id": str(i), "features": {k: float(v) for k, v in r.items() if k != "class"}}
            | {"label": int(r["class"])}
            for i, r in enumerate(elec2_rows(300))
        ]
        for start in range(0, 300, 100):
            assert client.post(
                "/v1/events", json={"events": events[start : start + 100]}
            ).is_success
        for _ in range(100):  # the loop records after it has answered the last request
            body = client.get("/v1/history").json()
            if body["points"] == 2:
                break
            time.sleep(0.02)
        HistoryResponse.model_validate(body)
        assert body["series"]["events"] == [100, 300]  # one point per request, >= 128 apart
        spec = client.get("/openapi.json").json()
        ok = spec["paths"]["/v1/history"]["get"]["responses"]["200"]["content"]
        assert ok["application/json"]["schema"]["$ref"].endswith("/HistoryResponse")
        assert "/dashboard" not in spec["paths"]
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'src="dashboard/static/vendor/uPlot.iife.min.js"' in page.text
        js = client.get("/dashboard/static/vendor/uPlot.iife.min.js")
        assert js.headers["content-type"].startswith("text/javascript") and "uPlot" in js.text
        for name in ("..%2Fapi.py", "dashboard.html", "nope.js"):
            missing = client.get(f"/dashboard/static/{name}")
            assert missing.status_code == 404
            assert missing.json()["error"]["reason"] == "not_found"


def test_a_process_without_a_loop_says_so() -> None:
    app = FastAPI()
    app.include_router(dashboard.router(lambda: None))
    with TestClient(app) as client:
        body = client.get("/v1/history").json()
        assert body["available"] is False and body["series"] == {}
        HistoryResponse.model_validate(body)
        assert client.get("/dashboard").status_code == 200


def test_no_change_baselines() -> None:
    c = PrequentialScore(window=2)
    for predicted, actual in ((0, 0), (0, 1), (1, 1), (0, 1)):
        c.update(predicted, actual)
    assert c.no_change == 2 / 4 and c.window_no_change == 2 / 2
    r = RegressionScore(window=2)
    for actual in (1.0, 3.0, 2.0):
        r.update(0.0, actual)
    assert r.no_change == pytest.approx((1 + 2 + 1) / 3)  # the first "previous" is 0
    assert r.window_no_change == pytest.approx((2 + 1) / 2)
    restored = RegressionScore(window=2)
    restored.load_state_dict(r.state_dict())
    assert restored.state_dict() == r.state_dict()
    old = {k: v for k, v in r.state_dict().items() if k not in ("nc_abs_sum", "recent_nc")}
    restored.load_state_dict(old)  # a checkpoint from before the baseline
    assert restored.no_change == 0.0 and restored.mae == r.mae


def test_report_html_is_self_contained(elec2_run: Service, tmp_path: Path) -> None:
    history = elec2_run.loop.history.to_dict()
    page = render_html(elec2_run.describe(), history, title="</script><script>alert(1)</script>")
    assert "dashboard/static/" not in page  # every file inlined
    assert "Permission is hereby granted" in page  # uPlot's MIT license travels with it
    assert "<script>alert(1)" not in page
    blob = page.split('<script id="streamcl-data" type="application/json">')[1]
    data = json.loads(blob.split("</script>")[0])
    assert data["history"] == history and "alert(1)" in data["title"]
    with pytest.raises(ValueError, match="unknown report type"):
        write_report(tmp_path / "r.txt", {}, history)


def test_replay_refuses_an_unknown_report_type_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["replay", "--data", "builtin://elec2", "--report", str(tmp_path / "r.pdf")])
    assert code == 2
    assert "neither .html nor .png" in capsys.readouterr().err
