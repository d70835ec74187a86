"""pulltrace-server as a real process: reports, REST, the event stream, metrics, limits,
graceful shutdown; then fed by the real agent tracking a real pull in containerd.
Nothing here asserts on speed."""
# ctest: TIMEOUT=600

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from harness import Server, reports, wait_until

KIB = 1024
MIB = 1024 * 1024
TOKEN = "e2e-token"
MANIFEST = "sha256:" + "c" * 64
LAYER = "sha256:" + "b" * 64


def report(node, seq, downloaded, completed=False, boot="boot-1", pull_id="p1", total=2000):
    now = time.time()
    return reports.report(node, seq, boot=boot, pulls=[reports.pull(
        f"{node}/{pull_id}", "127.0.0.1/e2e/app", MANIFEST, started=now - 2,
        completed=now if completed else None,
        layers=[reports.layer(LAYER, total, downloaded)])])


def start_server(binary, workdir, **env):
    return Server(binary, Path(workdir) / "server.log", token=TOKEN, env=env).start()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="pt-server-e2e-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(server_binary, workdir):
    s = start_server(server_binary, workdir, PULLTRACE_SSE_HEARTBEAT="500ms")
    yield s
    s.stop()


def test_reports_rest_and_errors(server):
    assert server.post(report("node-a", 1, 0)).json() == {"status": "applied", "pulls": 1}
    r = server.post(report("node-a", 2, 500))
    assert r.status_code == 200
    assert server.post(report("node-a", 1, 0)).json()["status"] == "ignored"
    # Rejected reports change nothing.
    bad = report("node-a", 3, 1000)
    bad["pulls"][0]["layers"][0]["state"] = "paused"
    r = server.post(bad)
    assert r.status_code == 400
    assert r.json() == {"error": r.json()["error"], "field": "pulls[0].layers[0].state"}
    assert server.post(report("node-a", 3, 1000), token="nope").status_code == 401
    assert server.post(report("node-a", 3, 1000), token=False).status_code == 401
    r = requests.post(server.url + "/api/v1/report", data=b"{" * 100, timeout=5,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("invalid JSON")
    r = requests.post(server.url + "/api/v1/report", data=b"x" * (2 * MIB), timeout=5,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 413
    r = requests.post(server.url + "/api/v1/report", data="{}", timeout=5,
                      headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
    assert r.status_code == 415

    pulls = requests.get(server.url + "/api/v1/pulls", timeout=5).json()["pulls"]
    assert len(pulls) == 1
    p = pulls[0]
    assert p["id"] == "node-a/p1" and p["downloadedBytes"] == 500 and p["percent"] == 25.0
    assert p["state"] == "pulling" and p["pods"] == []
    # Ids contain '/': both forms route.
    for path in ("/api/v1/pulls/node-a/p1", "/api/v1/pulls/node-a%2Fp1"):
        assert requests.get(server.url + path, timeout=5).json()["pull"]["id"] == "node-a/p1"
    assert requests.get(server.url + "/api/v1/pulls?state=completed", timeout=5).json()["pulls"] == []
    assert requests.get(server.url + "/api/v1/pulls?state=bogus", timeout=5).status_code == 400
    assert requests.get(server.url + "/api/v1/pulls?node=other", timeout=5).json()["pulls"] == []
    nodes = requests.get(server.url + "/api/v1/nodes", timeout=5).json()["nodes"]
    assert nodes[0]["name"] == "node-a" and nodes[0]["seq"] == 2 and nodes[0]["state"] == "ok"
    r = requests.get(server.url + "/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["checks"][0]["name"] == "policy"
    for h in ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy"):
        assert h in r.headers
    assert "Pulltrace" in requests.get(server.url + "/", timeout=5).text

    # Too frequent: a burst of 10, then 429 with Retry-After.
    codes = [server.post(report("node-b", i, 0)).status_code for i in range(1, 16)]
    assert 429 in codes and codes[0] == 200
    r = server.post(report("node-b", 99, 0))
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_event_stream_resume_and_metrics(server, tmp_path):
    s = server.events()
    snap = s.wait(lambda e: e["event"] == "snapshot", what="snapshot")
    assert snap["data"]["v"] == 1 and snap["data"]["pulls"] == []
    server.post(report("node-a", 1, 0))
    started = s.wait(lambda e: e["event"] == "pull.started")
    assert started["data"]["pull"]["id"] == "node-a/p1"
    server.post(report("node-a", 2, 800))
    s.wait(lambda e: e["event"] == "pull.progress")
    last_seen = s.last_id()
    s.close()

    # Missed while disconnected:
    server.post(report("node-a", 3, 1600))
    server.post(report("node-a", 4, 2000, completed=True))
    r = server.events(last_id=last_seen)
    done = r.wait(lambda e: e["event"] == "pull.completed")
    ids = [e["id"] for e in r.events]
    assert ids[0] == last_seen + 1 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert not any(e["event"] == "snapshot" for e in r.events)
    assert done["data"]["pull"]["downloadedBytes"] == 2000
    # Heartbeats arrive.
    r.wait_comment("heartbeat", timeout=10)
    r.close()

    # Too old an id: a fresh snapshot holding the current state.
    r = server.events(last_id=5)
    snap = r.wait(lambda e: e["event"] == "snapshot")
    assert snap["data"]["pulls"][0]["state"] == "completed"
    r.close()

    text = server.metrics().text
    assert 'pulltrace_agent_reports_total{result="applied"} 4' in text
    assert "pulltrace_pulls_total 1" in text
    assert 'pulltrace_pull_duration_seconds_bucket{le="5"} 1' in text
    assert "pulltrace_pull_bytes_total 2000" in text
    promtool = shutil.which("promtool")
    if promtool:
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("history", [False, True], ids=["memory", "history"])
def test_a_pulls_own_events(server_binary, workdir, history):
    """GET /api/v1/pulls/{id}/events: the pull's story as the event stream told it (same ids,
    same shapes, the pull without its layers), also after the reader left. With a history the
    events wait for their records' commit (the outbox) and keep the ids the stream gives them."""
    env = {"PULLTRACE_SSE_HEARTBEAT": "500ms"}
    if history:
        (Path(workdir) / "data").mkdir()
        env["PULLTRACE_DATA_DIR"] = str(Path(workdir) / "data")
    server = start_server(server_binary, workdir, **env)
    try:
        before = check_own_events(server)
    finally:
        server.stop()
    if not history:
        return
    # Restarted: the pulls come back from the history, and so do their events.
    server = start_server(server_binary, workdir, **env)
    try:
        after = requests.get(server.url + "/api/v1/pulls/node-a/p1/events", timeout=5).json()
        assert after["events"] == before and after["dropped"] == 0
        r = requests.get(server.url + "/api/v1/pulls/node-x/nope/events", timeout=5)
        assert r.status_code == 404 and r.json() == {"error": "pull not found", "field": "id"}
    finally:
        server.stop()


def check_own_events(server):
    with server.events() as s:
        s.wait(lambda e: e["event"] == "snapshot", what="snapshot")
        server.post(report("node-a", 1, 0))
        server.post(report("node-a", 2, 800))  # bytes only: not part of the story
        server.post(report("node-a", 3, 2000, completed=True))
        s.wait(lambda e: e["event"] == "pull.completed")
        streamed = {e["id"]: e for e in s.events if e["event"].startswith("pull.")}
    for path in ("/api/v1/pulls/node-a/p1/events", "/api/v1/pulls/node-a%2Fp1/events"):
        r = requests.get(server.url + path, timeout=5)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
        doc = r.json()
        assert doc["apiVersion"] == "v1" and doc["pullId"] == "node-a/p1" and doc["dropped"] == 0
        assert [e["type"] for e in doc["events"]] == ["pull.started", "pull.completed"]
        for e in doc["events"]:
            sent = streamed[e["id"]]
            assert e["type"] == sent["event"]
            assert "layers" not in e["data"]["pull"]
            assert e["data"] == {**sent["data"], "pull": {k: v for k, v in sent["data"]["pull"].items()
                                                          if k != "layers"}}
    # After the reader left: kept all the same, under the ids the stream gives them.
    last = max(streamed)
    server.post(report("node-b", 1, 0))
    server.post(report("node-b", 2, 2000, completed=True))
    events = requests.get(server.url + "/api/v1/pulls/node-b/p1/events", timeout=5).json()["events"]
    assert [e["type"] for e in events] == ["pull.started", "pull.completed"]
    assert last < events[0]["id"] < events[1]["id"]
    assert events[1]["data"]["pull"]["state"] == "completed"
    # A pull the server does not know, and one it never had events of.
    r = requests.get(server.url + "/api/v1/pulls/node-x/nope/events", timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "pull not found", "field": "id"}
    assert requests.get(server.url + "/api/v1/pulls/node-a/p1/events/x", timeout=5).status_code == 404
    # Their memory, in the metrics.
    assert server.metric("pulltrace_pull_events_kept") == 4
    assert server.metric("pulltrace_pull_events_bytes") > 4 * 500
    assert server.metric("pulltrace_pull_events_dropped_total") == 0
    return requests.get(server.url + "/api/v1/pulls/node-a/p1/events", timeout=5).json()["events"]


def test_slow_and_hostile_clients_do_not_disturb(server_binary, workdir):
    srv = start_server(server_binary, workdir, PULLTRACE_REQUEST_TIMEOUT="1s",
                       PULLTRACE_SSE_CLIENT_QUEUE="524288", PULLTRACE_REPORT_MIN_INTERVAL="0")
    try:
        good = srv.events()
        good.wait(lambda e: e["event"] == "snapshot")
        # A slowloris client: one header byte at a time, never finishing.
        slow = socket.create_connection(("127.0.0.1", srv.port))
        slow.sendall(b"GET / HTTP/1.1\r\nX-A: ")
        # A stalled SSE client: never reads.
        stalled = socket.create_connection(("127.0.0.1", srv.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: t\r\n\r\n")
        # Big reports make big events for everyone.
        for seq in range(1, 120):
            # 300 more layers, each progressing: ~50 KiB of layerChanges in each pull.progress.
            layers = [reports.layer(LAYER, 100000, seq * 10)] + [
                reports.layer(reports.sha256(i), 10 ** 9, seq, media_type="x" * 200)
                for i in range(300)]
            body = reports.report("node-a", seq, pulls=[reports.pull(
                "node-a/p1", "127.0.0.1/e2e/" + "x" * 900, MANIFEST, layers,
                started=time.time() - 2)])
            assert srv.post(body).status_code == 200
            good.wait(lambda e, s=seq: "pull" in e["data"] and
                      e["data"]["pull"]["downloadedBytes"] == s * 310, timeout=10)
        got = [e for e in good.events if e["event"] in ("pull.started", "pull.progress")]
        assert len(got) >= 119
        # The slowloris client was cut off with a 408 (request timeout 1 s).
        slow.settimeout(5)
        data = slow.recv(4096)
        assert b"408" in data
        text = srv.metrics().text
        assert "pulltrace_sse_clients_dropped_total 1" in text
        assert "pulltrace_sse_clients_active 1" in text
        slow.close()
        stalled.close()
        good.close()
    finally:
        srv.stop()


def test_sigterm_flushes_streams_and_exits(server_binary, workdir):
    srv = start_server(server_binary, workdir)
    s = srv.events()
    s.wait(lambda e: e["event"] == "snapshot")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    s.wait_end(timeout=5)
    assert "server shutting down" in s.comments
    srv.proc.wait(timeout=5)
    assert time.monotonic() - t0 < 2.5
    assert srv.proc.poll() == 0


@pytest.mark.stack(rate=512 * KIB)
def test_real_agent_real_pull(stack, server_binary, cri_available):
    if not cri_available:
        pytest.skip("pt-cri-pull not built")
    srv = stack.server(token=TOKEN)
    try:
        app = stack.images.image("e2e/srv", "v1", layers=[1 * MIB, 1536 * KIB])
        s = srv.events()
        s.wait(lambda e: e["event"] == "snapshot")
        stack.agent(srv.url, node_name="e2e-node",
                    env={"PULLTRACE_AGENT_TOKEN": TOKEN, "PULLTRACE_REPORT_INTERVAL": "500ms"})
        pull = stack.cri_pull(app, background=True)
        started = s.wait(lambda e: e["event"] == "pull.started" and
                         e["data"]["pull"]["manifestDigest"] == app.manifest_digest, timeout=60)
        assert started["data"]["pull"]["totalBytes"] == app.total_bytes
        done = s.wait(lambda e: e["event"] == "pull.completed" and
                      e["data"]["pull"]["manifestDigest"] == app.manifest_digest, timeout=120)
        assert pull.result(timeout=60).returncode == 0
        p = done["data"]["pull"]
        assert p["downloadedBytes"] == p["totalBytes"] == app.total_bytes
        assert p["percent"] == 100.0 and p["layersDone"] == len(app.layers)
        # bytes only grow between started and completed
        seen = [e["data"]["pull"]["downloadedBytes"] for e in s.events
                if e["event"].startswith("pull.") and "pull" in e["data"]
                and e["data"]["pull"]["manifestDigest"] == app.manifest_digest]
        assert seen == sorted(seen)
        api = requests.get(srv.url + "/api/v1/pulls?node=e2e-node&state=completed", timeout=5).json()
        assert any(x["manifestDigest"] == app.manifest_digest for x in api["pulls"])
        s.close()
    finally:
        srv.stop()


@pytest.mark.stack(rate=256 * KIB)
def test_node_that_stops_reporting_is_forgotten(stack, server_binary, cri_available):
    """A node that leaves the cluster (its agent stops reporting mid-pull) goes lost, its
    pull is marked lost and then evicted, and the node is forgotten: it leaves
    /api/v1/nodes and pulltrace_agents{state="lost"}, and the stream says node.removed."""
    srv = stack.server(token=TOKEN, env={
        "PULLTRACE_KUBERNETES": "off", "PULLTRACE_NODE_LOST_GRACE": "3s",
        "PULLTRACE_HISTORY_TTL": "4s"})
    s = srv.events()
    try:
        app = stack.images.image("e2e/gone", "v1", layers=[4 * MIB])
        s.wait(lambda e: e["event"] == "snapshot")
        agent = stack.agent(srv.url, node_name="scaled-away",
                            env={"PULLTRACE_AGENT_TOKEN": TOKEN, "PULLTRACE_REPORT_INTERVAL": "500ms"})
        stack.cri_pull(app, background=True)
        started = s.wait(lambda e: e["event"] == "pull.started" and
                         e["data"]["pull"]["manifestDigest"] == app.manifest_digest, timeout=60)
        pull_id = started["data"]["pull"]["id"]
        assert srv.metric("pulltrace_agents", {"state": "ok"}) == 1
        agent.stop()

        lost = s.wait(lambda e: e["event"] == "node.updated" and
                      e["data"]["node"]["name"] == "scaled-away" and
                      e["data"]["node"]["state"] == "lost", timeout=30, what="node lost")
        failed = s.wait(lambda e: e["event"] == "pull.failed" and
                        e["data"]["pull"]["id"] == pull_id, timeout=30, what="pull lost")
        assert failed["data"]["pull"]["state"] == "lost"
        assert failed["data"]["pull"]["error"]["reason"] == "node-lost"
        # Lost, with a pull still in the tables: the node stays until the pull is evicted
        # (the order of the events below), then it is forgotten.
        evicted = s.wait(lambda e: e["event"] == "pull.evicted" and e["data"]["pullId"] == pull_id,
                         timeout=30, what="the lost pull evicted")
        removed = s.wait(lambda e: e["event"] == "node.removed", timeout=30, what="node.removed")
        assert removed["data"]["node"] == "scaled-away"
        assert lost["id"] < failed["id"] < evicted["id"] < removed["id"]
        assert requests.get(srv.url + "/api/v1/nodes", timeout=5).json()["nodes"] == []
        m = srv.metrics()
        assert m.value("pulltrace_agents", {"state": "lost"}) == 0
        assert m.value("pulltrace_agents_forgotten_total") == 1
        assert m.value("pulltrace_agents_max") == 100000
        assert any(r.get("msg") == "node forgotten" and r.get("node") == "scaled-away"
                   for r in srv.log_json())
    finally:
        s.close()
        srv.stop()


def test_broken_policy_at_start_runs_the_defaults(server_binary, workdir):
    """A broken script in PULLTRACE_POLICY_DIR at start: the server runs the built-in defaults
    instead of exiting (a crash loop under Kubernetes), says so on /readyz (still ready), in a
    metric and a log line naming script, line and message; the fixed script is reloaded and
    takes over. --check-policy stays strict."""
    policy = Path(workdir) / "policy"
    policy.mkdir()
    (policy / "zz-team.lua").write_text("-- the team's alerts\n\nlocal = 3\n")
    r = subprocess.run([str(server_binary), "--check-policy", str(policy)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "zz-team.lua:3:" in r.stdout + r.stderr, r

    srv = start_server(server_binary, workdir, PULLTRACE_KUBERNETES="off",
                       PULLTRACE_POLICY_DIR=str(policy))
    try:
        ready = requests.get(srv.url + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        check = next(c for c in ready.json()["checks"] if c["name"] == "policy")
        assert check["ok"] is True
        assert "failed to load at startup, running the built-in defaults" in check["detail"]
        assert "zz-team.lua:3: <name> expected near '='" in check["detail"]
        assert check["status"]["defaultsOnly"] is True
        assert check["status"]["lastReload"] == "failed"
        assert {s["origin"] for s in check["status"]["scripts"]} == {"builtin"}
        m = srv.metrics()
        assert m.value("pulltrace_policy_defaults_only") == 1
        assert m.value("pulltrace_policy_load_error", {
            "script": "zz-team.lua", "line": "3", "message": "<name> expected near '='"}) == 1
        assert m.value("pulltrace_policy_reloads_total", {"result": "failure"}) == 1
        logged = [x for x in srv.log_json()
                  if x.get("msg") == "policy failed to load at startup, running the built-in defaults"]
        assert len(logged) == 1 and logged[0]["level"] == "error"
        assert (logged[0]["script"], logged[0]["line"]) == ("zz-team.lua", 3)
        assert logged[0]["message"] == "<name> expected near '='"
        # The built-in defaults work: a report is applied and the pull tracked.
        assert srv.post(report("node-p", 1, 100)).json()["status"] == "applied"

        # The fix is picked up by the reload watch and takes over.
        (policy / "zz-team.lua").write_text("local team = 'payments'\n")

        def fixed():
            c = next(c for c in requests.get(srv.url + "/readyz", timeout=5).json()["checks"]
                     if c["name"] == "policy")
            return c if c["status"]["lastReload"] == "ok" else None
        check = wait_until(fixed, 60, what="the fixed policy reloaded")
        assert check["status"]["defaultsOnly"] is False
        assert check["detail"].endswith("scripts loaded")
        assert any(s["name"] == "zz-team.lua" for s in check["status"]["scripts"])
        m = srv.metrics()
        assert m.value("pulltrace_policy_defaults_only") == 0
        assert not [k for k in m.samples if k[0] == "pulltrace_policy_load_error"]
        assert m.value("pulltrace_policy_reloads_total", {"result": "success"}) == 1
    finally:
        srv.stop()
