"""The pull history (PULLTRACE_DATA_DIR, docs/history.md) on the real binary: restarts with
SIGTERM and kill -9 (the same pulls, ids, times and figures; no second pull.started or
pull.completed; event ids that keep increasing; a Last-Event-ID from before the restart gets a
snapshot), the history API, retention by age and by size, a corrupt database, an unwritable
data directory, and a full disk at runtime. Agents are stood in for by synthetic reports
(harness/reports.py). Nothing here asserts on speed."""
# ctest: TIMEOUT=600

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from harness import Server, reports
from harness.daemon import run_binary
from harness.proc import wait_until

pytestmark = pytest.mark.containerd_independent

IMAGE = "registry.example/shop/api:1.4.2"


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pt-history-e2e-"))
    (d / "data").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(binary, workdir, name, **env):
    full = {"PULLTRACE_DATA_DIR": str(workdir / "data"), "PULLTRACE_KUBERNETES": "off",
            "PULLTRACE_REPORT_MIN_INTERVAL": "0"}
    full.update(env)
    return Server(binary, workdir / f"{name}.log", env=full).start()


class Agent:
    """One node's reports: pulls by id, sent in full each time as the agent does."""

    def __init__(self, node):
        self.node = node
        self.seq = 0
        self.pulls = {}

    def set(self, pull_id, downloaded, total=4000, started=None, completed=None, image=IMAGE,
            cached=0):
        layers = [reports.layer(reports.sha256(hash((pull_id, 1)) & 0xffffffff), total, downloaded)]
        if cached:
            layers.append(reports.layer(reports.sha256(hash((pull_id, 2)) & 0xffffffff), cached,
                                        cached, state="cached"))
        self.pulls[pull_id] = reports.pull(f"{self.node}/{pull_id}", image, reports.sha256(7),
                                           layers, started=started, completed=completed)

    def drop(self, pull_id):
        self.pulls.pop(pull_id)

    def send(self, server):
        self.seq += 1
        r = server.post(reports.report(self.node, self.seq, list(self.pulls.values())))
        assert r.status_code == 200, r.text
        return r.json()


def history(server, **params):
    r = requests.get(server.url + "/api/v1/history", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def all_history(server, **params):
    out, cont = [], None
    while True:
        page = history(server, **params, **({"continue": cont} if cont else {}))
        out += page["pulls"]
        cont = page["metadata"].get("continue")
        if not cont:
            return out


def stable(pull):
    """A pull's fields that a restart must keep (the rate of a pull in flight restarts)."""
    return {k: v for k, v in pull.items() if k not in ("bytesPerSecond", "etaSeconds")}


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_keeps_pulls_ids_and_events(server_binary, workdir, how):
    s = start(server_binary, workdir, "first")
    agent = Agent("node-a")
    t0 = time.time() - 30
    stream = s.events()
    agent.set("done", 0, started=t0)
    agent.set("inflight", 0, started=t0 + 1)
    agent.set("vanishes", 0, started=t0 + 2)
    agent.send(s)
    agent.set("done", 4000, started=t0, completed=t0 + 12.5, cached=1000)
    agent.set("inflight", 1500, started=t0 + 1)
    agent.send(s)
    agent.drop("vanishes")
    agent.send(s)
    # Events go out after their records are committed: once a client saw them, they are on
    # disk, also for a kill -9 right now.
    stream.wait(lambda e: e["event"] == "pull.completed", what="pull.completed")
    stream.wait(lambda e: e["event"] == "pull.failed", what="pull.failed of the lost pull")
    before = {p["id"]: p for p in s.pulls()}
    assert set(before) == {"node-a/done", "node-a/inflight", "node-a/vanishes"}
    last_id = max(e["id"] for e in stream.events)
    stream.close()
    if how == "kill9":
        s.kill()
    else:
        status, _ = s.stop()
        assert status == 0

    s2 = start(server_binary, workdir, "second")
    after = {p["id"]: p for p in s2.pulls()}
    assert set(after) == set(before)
    for pid in ("node-a/done", "node-a/vanishes"):
        assert after[pid] == before[pid], pid
    # A pull in flight is back as last written (its start); the agent's next report brings
    # its progress (docs/history.md).
    inflight_keys = ("startedAt", "totalBytes", "state", "image", "manifestDigest", "source")
    assert {k: after["node-a/inflight"][k] for k in inflight_keys} == \
        {k: before["node-a/inflight"][k] for k in inflight_keys}
    detail = requests.get(s2.url + "/api/v1/pulls/node-a/done", timeout=5).json()["pull"]
    assert detail == before["node-a/done"]
    assert detail["durationSeconds"] == 12.5 and detail["completedAt"] == before["node-a/done"]["completedAt"]

    # A client resuming from before the restart: a snapshot with everything, newer ids.
    resumed = s2.events(last_id=last_id)
    snap = resumed.wait(lambda e: True, what="the first event")
    assert snap["event"] == "snapshot"
    assert snap["id"] >= last_id
    assert {p["id"] for p in snap["data"]["pulls"]} == set(before)

    # The agent's next reports: the finished pull again (agents linger completed pulls), the
    # one in flight progressing, then completing.
    agent.set("inflight", 3000, started=t0 + 1)
    agent.send(s2)
    agent.set("inflight", 4000, started=t0 + 1, completed=time.time())
    agent.send(s2)
    resumed.wait(lambda e: e["event"] == "pull.completed", what="pull.completed of the pull in flight")
    agent.send(s2)
    time.sleep(0.5)  # anything a wrong server would send after the last report arrives
    evs = [e for e in resumed.events if e["event"] != "snapshot"]
    resumed.close()
    assert all(e["id"] > last_id for e in evs)
    ids = [e["id"] for e in resumed.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    started = [e for e in evs if e["event"] == "pull.started"]
    completed = [e["data"]["pull"]["id"] for e in evs if e["event"] == "pull.completed"]
    assert started == []
    assert completed == ["node-a/inflight"]

    # The history API: every pull, paged; statistics of the image.
    pulls = all_history(s2, limit=1)
    assert [p["id"] for p in pulls] == ["node-a/vanishes", "node-a/inflight", "node-a/done"]
    assert history(s2, state="lost")["pulls"][0]["error"]["reason"] == "lost"
    st = requests.get(s2.url + "/api/v1/history/stats", params={"image": "shop/api"}, timeout=10).json()
    img = st["images"][0]
    assert img["image"] == IMAGE and img["pulls"] == 3 and img["completed"] == 2
    assert img["failuresByReason"] == {"lost": 1}
    assert img["durationSeconds"]["p50"] == 12.5
    assert img["cachedShare"] > 0
    s2.stop()


def test_history_api_errors(server_binary, workdir):
    s = start(server_binary, workdir, "server")
    for params, field in (({"limit": "0"}, "limit"), ({"since": "yesterday"}, "since"),
                          ({"state": "paused"}, "state"), ({"continue": "x"}, "continue")):
        r = requests.get(s.url + "/api/v1/history", params=params, timeout=5)
        assert r.status_code == 400 and r.json()["field"] == field, (params, r.text)
    assert requests.get(s.url + "/api/v1/history/alerts", timeout=5).json()["alerts"] == []
    s.stop()
    plain = Server(server_binary, workdir / "plain.log", env={"PULLTRACE_KUBERNETES": "off"}).start()
    r = requests.get(plain.url + "/api/v1/history", timeout=5)
    assert r.status_code == 404 and "PULLTRACE_DATA_DIR" in r.json()["error"]
    assert plain.metric("pulltrace_history_degraded") is None
    plain.stop()


def finished_pulls(agent, server, n, prefix, message_bytes=0):
    """n pulls that complete, reported in batches; with message_bytes, a long image name
    makes each record bigger."""
    t = time.time()
    image = IMAGE + ("-" + "x" * message_bytes if message_bytes else "")
    for i in range(n):
        agent.set(f"{prefix}{i}", 4000, started=t - 10, completed=t - 5, image=image)
        if len(agent.pulls) >= 50:
            agent.send(server)
            agent.pulls.clear()
    if agent.pulls:
        agent.send(server)
        agent.pulls.clear()


def test_retention_by_age(server_binary, workdir):
    # Finished pulls leave the tables after 3 s (eviction), then the history (they ended 5 s
    # before they were reported, more than the retention's 2 s).
    s = start(server_binary, workdir, "server", PULLTRACE_HISTORY_TTL="3s",
              PULLTRACE_HISTORY_RETENTION="2s")
    agent = Agent("node-a")
    finished_pulls(agent, s, 20, "old")
    assert len(all_history(s)) == 20
    wait_until(lambda: (s.metric("pulltrace_history_deleted_total", {"reason": "age"}) or 0) >= 20,
               60, interval=0.5, what="retention by age")
    assert all_history(s) == []
    s.stop()


def test_retention_by_size(server_binary, workdir):
    limit = 400_000
    s = start(server_binary, workdir, "server", PULLTRACE_HISTORY_TTL="1s",
              PULLTRACE_HISTORY_MAX_BYTES=str(limit))
    agent = Agent("node-a")
    finished_pulls(agent, s, 600, "p", message_bytes=900)
    wait_until(lambda: (s.metric("pulltrace_history_deleted_total", {"reason": "size"}) or 0) > 0
               and s.metric("pulltrace_history_database_bytes") <= limit,
               90, interval=0.5, what="retention by size")
    kept = all_history(s)
    assert 0 < len(kept) < 600
    # The newest are kept: the oldest went first.
    numbers = sorted(int(p["id"].rsplit("/p", 1)[1]) for p in kept)
    assert numbers == list(range(600 - len(kept), 600))
    s.stop()


def test_corrupt_database_is_a_clear_startup_error(server_binary, workdir):
    db = workdir / "data" / "history.db"
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    r = run_binary(server_binary, env={"PULLTRACE_DATA_DIR": str(workdir / "data"),
                                       "PULLTRACE_KUBERNETES": "off",
                                       "PULLTRACE_HTTP_ADDR": "127.0.0.1:0",
                                       "PULLTRACE_METRICS_ADDR": "127.0.0.1:0"})
    assert r.returncode == 1
    assert "history error" in r.stderr and str(db) in r.stderr and "not a database" in r.stderr
    # Nothing was overwritten.
    assert db.read_bytes() == b"this is not an SQLite database\n" * 200


def test_unwritable_data_dir_is_a_clear_startup_error(server_binary, workdir):
    data = workdir / "data"
    env = {"PULLTRACE_DATA_DIR": str(data), "PULLTRACE_KUBERNETES": "off",
           "PULLTRACE_HTTP_ADDR": "127.0.0.1:0", "PULLTRACE_METRICS_ADDR": "127.0.0.1:0",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if os.geteuid() == 0:
        # root writes anywhere: run the server as nobody on a directory of root's.
        os.chmod(workdir, 0o755)
        os.chmod(data, 0o755)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(server_binary)]
    else:
        os.chmod(data, 0o555)
        cmd = [str(server_binary)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
    os.chmod(data, 0o755)
    assert r.returncode == 1, r.stderr
    assert "PULLTRACE_DATA_DIR" in r.stderr and "not writable" in r.stderr and str(data) in r.stderr
    assert not (data / "history.db").exists()


def test_full_disk_degrades_history_not_the_live_view(server_binary, workdir):
    # The file-size limit stands in for a full volume: writes past it fail (EFBIG).
    full = {"PULLTRACE_DATA_DIR": str(workdir / "data"), "PULLTRACE_KUBERNETES": "off",
            "PULLTRACE_REPORT_MIN_INTERVAL": "0"}
    s = Server(server_binary, workdir / "server.log", env=full,
               wrap=["prlimit", "--fsize=300000"]).start()
    agent = Agent("node-a")
    stream = s.events()
    finished_pulls(agent, s, 400, "p", message_bytes=900)
    wait_until(lambda: s.metric("pulltrace_history_degraded") == 1, 60, interval=0.5,
               what="the degraded history")
    assert s.metric("pulltrace_history_write_errors_total") > 0
    ready = requests.get(s.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    check = next(c for c in ready.json()["checks"] if c["name"] == "history")
    assert check["degraded"] and check["detail"].startswith("degraded:")
    # The live view goes on: a new pull is in the tables and on the stream.
    agent.set("after", 100, started=time.time())
    agent.send(s)
    assert s.find(lambda p: p["id"] == "node-a/after")
    stream.wait(lambda e: e["event"] == "pull.started" and e["data"]["pull"]["id"] == "node-a/after",
                what="pull.started after the disk filled up")
    stream.close()
    assert s.running()
    assert any(line.get("msg", "").startswith("history write failed") for line in s.log_json())
    status, _ = s.stop()
    assert status == 0
