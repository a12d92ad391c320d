"""Fault tests of the two roles as subprocesses on loopback: one learner, two replicas.

Under a steady predict load against both replicas: pin / rollback reach every replica and
predict exactly as a direct load of that version; the learner is SIGKILLed five times with
no failed prediction, no replica's version going backwards, and new versions resuming after
each restart; a SIGKILLed replica leaves the other one answering. The learner runs without
checkpoints here (a restart relearns from the start of the stream, which is quicker than a
restore that re-reads the looping file up to its position); version numbers still continue
after the highest one in the store.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from sources import elec2_rows

from streamcl.models.registry import registry_from_settings
from streamcl.models.version import model_fingerprint
from streamcl.serving.replica_app import decoder_from_settings
from streamcl.settings import load_settings

pytestmark = pytest.mark.slow

STREAMCL = str(Path(sys.executable).parent / "streamcl")
TOKEN = "s3cret"
INSTANCES = [
    {"features": {k: float(v) for k, v in row.items() if k != "class"}} for row in elec2_rows(20)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """One ``streamcl`` subprocess (``run --role learner`` or ``serve``) on a loopback port."""

    def __init__(self, tmp: Path, name: str, command: list[str], config: dict[str, Any]) -> None:
        self.port = free_port()
        self.tmp, self.name, self.command = tmp, name, command
        self.config = {**config, "server": {**config["server"], "port": self.port}}
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5.0)
        self.runs = 0
        self.killed = False
        self.start()

    def start(self) -> None:
        self.runs += 1
        self.killed = False
        cfg = self.tmp / f"{self.name}.yaml"
        cfg.write_text(yaml.safe_dump(self.config))
        self.log = self.tmp / f"{self.name}-{self.runs}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [STREAMCL, *self.command, "--config", str(cfg)], stdout=out, stderr=out
            )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name} not ready in {timeout_s} s: {self.log.read_text()[-2000:]}"
        )

    def kill(self) -> None:
        self.killed = True
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.client.close()


class Load:
    """A steady predict load (bounded: at most ``rate`` requests/s until stopped)."""

    def __init__(self, replicas: list[Proc], rate: float = 40.0) -> None:
        self.replicas, self.rate = replicas, rate
        self.failures: list[str] = []
        self.versions: dict[str, list[int]] = {r.name: [] for r in replicas}
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 300  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            for replica in self.replicas:
                if replica.killed:
                    continue  # a replica killed on purpose
                self.sent += 1
                try:
                    r = replica.client.post("/v1/predict", json={"instances": INSTANCES[:3]})
                    if r.status_code != 200:
                        self.failures.append(f"{replica.name}: {r.status_code} {r.text[:200]}")
                    else:
                        self.versions[replica.name].append(r.json()["model_version"])
                except httpx.HTTPError as exc:
                    if not replica.killed:
                        self.failures.append(f"{replica.name}: {exc!r}")
            self._stop.wait(1.0 / self.rate)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serving")
    config: dict[str, Any] = {
        "source": {"kind": "file", "path": "builtin://elec2", "loop": True, "rate": 2000},
        "learner": {"hidden": [32]},
        "models": {
            "store": str(tmp / "models"),
            "publish_every_seconds": 0.3,
            "gate_window": 0,
            "keep": 50,
        },
        "serve": {"poll_interval_s": 0.2, "max_staleness_s": 30.0},
        "server": {"host": "127.0.0.1", "api_token": TOKEN},
    }
    learner = Proc(tmp, "learner", ["run", "--role", "learner"], config)
    replicas = [Proc(tmp, f"replica{i}", ["serve"], config) for i in range(2)]
    try:
        for p in (learner, *replicas):
            p.wait_ready()
        settings = load_settings(tmp / "learner.yaml")
        yield {"learner": learner, "replicas": replicas, "settings": settings, "tmp": tmp}
    finally:
        for p in (learner, *replicas):
            p.stop()


def _served(replica: Proc) -> dict[str, Any]:
    return replica.client.get("/v1/model").json()  # type: ignore[no-any-return]


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_pin_rollback_and_unpin_reach_every_replica(cluster: dict[str, Any]) -> None:
    learner, replicas = cluster["learner"], cluster["replicas"]
    registry = registry_from_settings(cluster["settings"])
    assert registry is not None
    _wait(lambda: len(registry.versions()) >= 5, 30, "five versions")
    newest = max(registry.versions())
    old = newest - 2
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert learner.client.post("/v1/models/pin", json={"version": old}).status_code == 401
    r = learner.client.post("/v1/models/pin", json={"version": old}, headers=auth)
    assert r.status_code == 200, r.text
    try:
        _pinned_then_rolled_back(cluster, registry, old)
    finally:
        r = learner.client.post("/v1/models/unpin", headers=auth)
    assert r.status_code == 200
    _wait(
        lambda: all(
            _served(p)["model_version"] > old and not _served(p)["pinned"] for p in replicas
        ),
        5,
        "unpin",
    )


def _pinned_then_rolled_back(cluster: dict[str, Any], registry: Any, old: int) -> None:
    learner, replicas = cluster["learner"], cluster["replicas"]
    _wait(lambda: all(_served(p)["model_version"] == old for p in replicas), 5, "the pin")
    assert all(_served(p)["pinned"] for p in replicas)
    direct = registry.load(old, model_fingerprint(cluster["settings"]))
    decoder = decoder_from_settings(cluster["settings"])
    events = [decoder.validate({"id": str(i), **x}) for i, x in enumerate(INSTANCES)]
    want = np.array(
        [[p.probabilities[k] for k in sorted(p.probabilities)] for p in direct.predict(events)]
    )
    for p in replicas:
        body = p.client.post("/v1/predict", json={"instances": INSTANCES}).json()
        assert body["model_version"] == old
        got = np.array(
            [
                [q["probabilities"][k] for k in sorted(q["probabilities"])]
                for q in body["predictions"]
            ]
        )
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # rollback from the pin goes one promoted version further back (CLI on the store)
    cfg = str(cluster["tmp"] / "learner.yaml")
    out = subprocess.run(
        [STREAMCL, "models", "rollback", "--config", cfg],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    back = int(yaml.safe_load(out.stdout)["version"])
    assert back < old
    _wait(lambda: all(_served(p)["model_version"] == back for p in replicas), 5, "the rollback")
    listing = learner.client.get("/v1/models").json()
    assert listing["pinned"]["version"] == back and listing["pinned"]["reason"] == "rollback"


def test_learner_sigkill_5_times_under_load_then_a_replica(cluster: dict[str, Any]) -> None:
    learner, replicas = cluster["learner"], cluster["replicas"]
    with Load(replicas) as load:
        for _ in range(5):
            before = max(_served(p)["model_version"] for p in replicas)
            t0 = time.monotonic()
            learner.kill()
            learner.start()
            learner.wait_ready()
            t1 = time.monotonic()
            _wait(
                lambda b=before: all(_served(p)["model_version"] > b for p in replicas),
                30,
                "new versions after the restart",
            )
            print(
                f"restart to ready {t1 - t0:.1f} s, to a new version {time.monotonic() - t1:.1f} s"
            )
        replicas[0].kill()
        sent = load.sent
        _wait(lambda: load.sent > sent + 20, 10, "requests to the surviving replica")
        assert replicas[1].client.get("/readyz").status_code == 200
    assert load.failures == []
    for name, seen in load.versions.items():
        assert seen, name
        assert all(a <= b for a, b in itertools.pairwise(seen)), f"{name} went backwards"
    assert load.sent > 100
