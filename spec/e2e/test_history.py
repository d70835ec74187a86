"""The pull history (PULLTRACE_DATA_DIR, docs/history.md) on the real binary: restarts with
SIGTERM and kill -9 (the same pulls, ids, times and figures; no second pull.started or
pull.completed; event ids that keep increasing; a Last-Event-ID from before the restart gets a
snapshot), the history API, retention by age and by size, a corrupt database, an unwritable
data directory, a read-only database file, and a full disk at runtime. Agents are stood in for by synthetic reports
(harness/reports.py), except in the last test: the real agent, containerd and a CRI pull across
a kill -9 of the server. Nothing here asserts on speed."""
# ctest: TIMEOUT=600

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from harness import Server, reports
from harness.proc import free_port, wait_until

KIB = 1024
MIB = 1024 * KIB

IMAGE = "registry.example/shop/api:1.4.2"


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pt-history-e2e-"))
    (d / "data").mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def launch(server_binary, workdir):
    """Starts pulltrace-server `name` (log `name`.log) on the test's data directory (none with
    data=False), `env` added; every server it started is stopped when the test ends, also
    when it fails."""
    started = []

    def _launch(name, data=True, wrap=(), **env):
        full = {"PULLTRACE_KUBERNETES": "off", "PULLTRACE_REPORT_MIN_INTERVAL": "0"}
        if data:
            full["PULLTRACE_DATA_DIR"] = str(workdir / "data")
        full.update(env)
        s = Server(server_binary, workdir / f"{name}.log", env=full, wrap=wrap)
        started.append(s)
        return s.start()
    yield _launch
    for s in started:
        if s.running():
            s.stop()


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


def history(server, session=requests, **params):
    r = session.get(server.url + "/api/v1/history", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def all_history(server, **params):
    out, cont = [], None
    session = requests.Session()
    while True:
        page = history(server, session, **params, **({"continue": cont} if cont else {}))
        out += page["pulls"]
        cont = page["metadata"].get("continue")
        if not cont:
            return out


def stable(pull):
    """A pull's fields that a restart must keep (the rate of a pull in flight restarts)."""
    return {k: v for k, v in pull.items() if k not in ("bytesPerSecond", "etaSeconds")}


@pytest.mark.containerd_independent
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_keeps_pulls_ids_and_events(launch, how):
    s = launch("first")
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
    # The alert that failure raises may be committed in the next transaction: it is on disk
    # once the stream carried it too.
    stream.wait(lambda e: e["event"] == "alert" and e["data"]["alert"]["labels"]["pull"] == "node-a/vanishes",
                what="the lost pull's alert")
    before = {p["id"]: p for p in s.pulls()}
    assert set(before) == {"node-a/done", "node-a/inflight", "node-a/vanishes"}
    last_id = max(e["id"] for e in stream.events)
    stream.close()
    if how == "kill9":
        s.kill()
    else:
        status, _ = s.stop()
        assert status == 0

    s2 = launch("second")
    after = {p["id"]: p for p in s2.pulls()}
    assert set(after) == set(before)
    for pid in ("node-a/done", "node-a/vanishes"):
        assert after[pid] == before[pid], pid
    # A pull in flight: after SIGTERM as it was (saved at shutdown); after kill -9 as last
    # written, at its start (reports do not write progress); the agent's next report brings
    # its progress (docs/history.md).
    inflight_keys = ("startedAt", "totalBytes", "state", "image", "manifestDigest", "source")
    if how == "sigterm":
        inflight_keys += ("downloadedBytes", "layers", "updatedAt", "percent")
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

    # The alert the lost pull raised before the restart (the default PullFailed) is history.
    alerts = requests.get(s2.url + "/api/v1/history/alerts", params={"node": "node-a"},
                          timeout=10).json()["alerts"]
    assert [(a["name"], a["labels"]["pull"]) for a in alerts] == [("PullFailed", "node-a/vanishes")]
    assert alerts[0]["severity"] == "critical" and alerts[0]["eventType"] == "pull.failed"

    # The history API: every pull, paged (one keep-alive connection: a deferred answer gives
    # the connection back); statistics of the image.
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


@pytest.mark.containerd_independent
def test_history_api_errors(launch):
    s = launch("server")
    for params, field in (({"limit": "0"}, "limit"), ({"since": "yesterday"}, "since"),
                          ({"state": "paused"}, "state"), ({"continue": "x"}, "continue")):
        r = requests.get(s.url + "/api/v1/history", params=params, timeout=5)
        assert r.status_code == 400 and r.json()["field"] == field, (params, r.text)
    assert requests.get(s.url + "/api/v1/history/alerts", timeout=5).json()["alerts"] == []
    # HEAD gets the headers of the deferred answer, and the connection serves the next request.
    session = requests.Session()
    head = session.head(s.url + "/api/v1/history", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"].startswith("application/json")
    assert session.get(s.url + "/api/v1/history", timeout=5).json()["pulls"] == []
    # The history's metrics pass promtool's lint.
    text = s.metrics().text
    assert "pulltrace_history_database_bytes" in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    s.stop()
    plain = launch("plain", data=False)
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


@pytest.mark.containerd_independent
def test_retention_by_age(launch):
    # Finished pulls leave the tables after 3 s (eviction), then the history (they ended 5 s
    # before they were reported, more than the retention's 2 s).
    s = launch("server", PULLTRACE_HISTORY_TTL="3s",
              PULLTRACE_HISTORY_RETENTION="2s")
    agent = Agent("node-a")
    finished_pulls(agent, s, 20, "old")
    # The history shows a pull once its record is committed, a few ms after the report.
    wait_until(lambda: len(all_history(s)) == 20, 30, what="the 20 pulls in the history")
    wait_until(lambda: (s.metric("pulltrace_history_deleted_total", {"reason": "age"}) or 0) >= 20,
               60, interval=0.5, what="retention by age")
    assert all_history(s) == []
    s.stop()


@pytest.mark.containerd_independent
def test_retention_by_size(launch, workdir):
    limit = 400_000
    # The pulls' records alone (no events of theirs, PULLTRACE_PULL_EVENTS_MAX_BYTES=0).
    quiet = {"PULLTRACE_HISTORY_TTL": "1s", "PULLTRACE_PULL_EVENTS_MAX_BYTES": "0"}
    # Retention never deletes a pull still in the tables, and the eviction policy lets them go
    # in the tables' order, not the reports': a limit reached while some of them are still in
    # the tables deletes around those. So the history is filled first without a limit, until
    # every pull left the tables, and the limit applies from the restart on.
    s = launch("fill", **quiet)
    agent = Agent("node-a")
    finished_pulls(agent, s, 600, "p", message_bytes=900)
    wait_until(lambda: s.pulls() == [] and len(all_history(s)) == 600, 60, interval=0.5,
               what="the 600 pulls out of the tables and in the history")
    status, _ = s.stop()
    assert status == 0
    assert (workdir / "data" / "history.db").stat().st_size > limit

    s = launch("limited", PULLTRACE_HISTORY_MAX_BYTES=str(limit), **quiet)
    wait_until(lambda: (s.metric("pulltrace_history_deleted_total", {"reason": "size"}) or 0) > 0
               and s.metric("pulltrace_history_database_bytes") <= limit,
               90, interval=0.5, what="retention by size")
    kept = all_history(s)
    assert 0 < len(kept) < 600
    assert s.metric("pulltrace_history_deleted_total", {"reason": "size"}) == 600 - len(kept)
    # The newest are kept: the oldest went first.
    numbers = sorted(int(p["id"].rsplit("/p", 1)[1]) for p in kept)
    assert numbers == list(range(600 - len(kept), 600))

    # New pulls while the limit holds: room is made by deleting the oldest of the earlier
    # ones, never the new ones (newer, and smaller than the limit together).
    deleted = 600 - len(kept)
    finished_pulls(agent, s, 20, "q", message_bytes=900)
    wait_until(lambda: s.pulls() == [] and len([p for p in all_history(s) if "/q" in p["id"]]) == 20
               and s.metric("pulltrace_history_deleted_total", {"reason": "size"}) > deleted
               and s.metric("pulltrace_history_database_bytes") <= limit, 90, interval=0.5,
               what="the new pulls in the history, under the limit again")
    after = all_history(s)
    older = sorted(int(p["id"].rsplit("/p", 1)[1]) for p in after if "/p" in p["id"])
    assert len(older) < len(kept)
    assert older == list(range(600 - len(older), 600))
    assert len(after) - len(older) == 20
    s.stop()


def run_until_exit(server_binary, data, as_nobody=False):
    """pulltrace-server on the data directory `data` until it exits (these runs fail at
    startup); with as_nobody, as the user nobody (root, who runs these tests in CI, may write
    anywhere)."""
    env = {"PULLTRACE_DATA_DIR": str(data), "PULLTRACE_KUBERNETES": "off",
           "PULLTRACE_HTTP_ADDR": "127.0.0.1:0", "PULLTRACE_METRICS_ADDR": "127.0.0.1:0",
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    cmd = [str(server_binary)]
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.containerd_independent
def test_corrupt_database_is_a_clear_startup_error(server_binary, workdir):
    db = workdir / "data" / "history.db"
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    r = run_until_exit(server_binary, workdir / "data")
    assert r.returncode == 1
    assert "history error" in r.stderr and str(db) in r.stderr and "not a database" in r.stderr
    # Nothing was overwritten.
    assert db.read_bytes() == b"this is not an SQLite database\n" * 200


@pytest.mark.containerd_independent
def test_unwritable_data_dir_is_a_clear_startup_error(server_binary, workdir):
    data = workdir / "data"
    root = os.geteuid() == 0
    if root:
        # A directory of root's, the server as nobody.
        os.chmod(workdir, 0o755)
        os.chmod(data, 0o755)
    else:
        os.chmod(data, 0o555)
    r = run_until_exit(server_binary, data, as_nobody=root)
    os.chmod(data, 0o755)
    assert r.returncode == 1, r.stderr
    assert "PULLTRACE_DATA_DIR" in r.stderr and "not writable" in r.stderr and str(data) in r.stderr
    assert not (data / "history.db").exists()


@pytest.mark.containerd_independent
def test_read_only_database_is_a_clear_startup_error(server_binary, workdir, launch):
    data = workdir / "data"
    launch("first").stop()
    db = data / "history.db"
    root = os.geteuid() == 0
    if root:
        # The directory is nobody's to write, the database file stays root's (0644).
        os.chmod(workdir, 0o755)
        os.chmod(data, 0o777)
        os.chmod(data / "history.lock", 0o666)
    else:
        os.chmod(db, 0o444)
    before = db.read_bytes()
    r = run_until_exit(server_binary, data, as_nobody=root)
    assert r.returncode == 1, r.stderr
    assert "history error" in r.stderr and str(db) in r.stderr and "readonly" in r.stderr
    assert db.read_bytes() == before


@pytest.mark.containerd_independent
def test_full_disk_degrades_history_not_the_live_view(launch):
    # The file-size limit stands in for a full volume: writes past it fail (EFBIG).
    s = launch("server", wrap=["prlimit", "--fsize=300000"])
    agent = Agent("node-a")
    stream = s.events()
    finished_pulls(agent, s, 400, "p", message_bytes=900)

    def history_check():
        ready = requests.get(s.url + "/readyz", timeout=5)
        assert ready.status_code == 200  # degraded, still ready: the live view works
        return next(c for c in ready.json()["checks"] if c["name"] == "history")
    # Both say so in one look: a later transaction that fits (records written into pages the
    # file already has) rightly clears the state again, so two looks apart may disagree.
    check = wait_until(lambda: (c := history_check())["degraded"] and
                       s.metric("pulltrace_history_degraded") == 1 and c, 60, interval=0.5,
                       what="the degraded history, on /readyz and in the metric")
    assert check["detail"].startswith("degraded:")
    assert s.metric("pulltrace_history_write_errors_total") > 0
    assert s.metric("pulltrace_history_records_dropped_total") > 0
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


@pytest.mark.stack(rate=512 * KIB)
def test_real_pull_across_a_kill9(stack, server_binary, cri_available, workdir):
    """The real agent and containerd: the server is killed mid-pull and restarted on its data
    directory; the pull continues under the same id, announced started once and completed once,
    with the time it started before the kill."""
    if not cri_available:
        pytest.skip("pt-cri-pull not built")
    addr = f"127.0.0.1:{free_port()}"
    env = {"PULLTRACE_DATA_DIR": str(workdir / "data"), "PULLTRACE_KUBERNETES": "off"}
    srv = stack.server(env=env, http_addr=addr)
    app = stack.images.image("e2e/history", "v1", layers=[1 * MIB, 1536 * KIB])
    stream = srv.events()
    stack.agent(srv.url, node_name="e2e-node", env={"PULLTRACE_REPORT_INTERVAL": "500ms"})
    pull = stack.cri_pull(app, background=True)
    mine = lambda e: e["event"].startswith("pull.") and "pull" in e["data"] and \
        e["data"]["pull"]["manifestDigest"] == app.manifest_digest  # noqa: E731
    started = stream.wait(lambda e: e["event"] == "pull.started" and mine(e), timeout=60)
    before = started["data"]["pull"]
    stream.close()
    srv.kill()

    srv2 = stack.server(env=env, http_addr=addr)
    stream = srv2.events()
    done = stream.wait(lambda e: e["event"] == "pull.completed" and mine(e), timeout=120)
    assert pull.result(timeout=60).returncode == 0
    after = done["data"]["pull"]
    assert after["id"] == before["id"] and after["startedAt"] == before["startedAt"]
    assert after["downloadedBytes"] == after["totalBytes"] == app.total_bytes
    time.sleep(1.5)  # a few more reports of the completed pull
    stream.close()
    mine_events = [e["event"] for e in stream.events if mine(e)]
    assert "pull.started" not in mine_events
    assert mine_events.count("pull.completed") == 1
    assert [p["id"] for p in srv2.pulls(node="e2e-node")] == [before["id"]]
    wait_until(lambda: [p["state"] for p in history(srv2, node="e2e-node")["pulls"]] == ["completed"],
               30, what="the completed pull in the history")
    srv2.stop()
