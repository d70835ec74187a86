"""pulltrace-server as a real process: reports, REST, the event stream, metrics, limits,
graceful shutdown; then fed by the real agent tracking a real pull in containerd.
Nothing here asserts on speed."""
# ctest: TIMEOUT=600

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from harness import Daemon, free_port, wait_until

KIB = 1024
MIB = 1024 * 1024
TOKEN = "e2e-token"


def now_ts(offset=0.0):
    t = datetime.fromtimestamp(time.time() + offset, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def report(node, seq, downloaded, completed=False, boot="boot-1", pull_id="p1", total=2000):
    state = "done" if downloaded == total else ("downloading" if downloaded else "waiting")
    return {
        "schemaVersion": "v1", "nodeName": node, "agentVersion": "e2e", "bootId": boot,
        "seq": seq, "timestamp": now_ts(),
        "pulls": [{
            "id": f"{node}/{pull_id}", "imageRef": "127.0.0.1/e2e/app",
            "manifestDigest": "sha256:" + "c" * 64, "indexDigest": None,
            "startedAt": now_ts(-2), "completedAt": now_ts() if completed else None,
            "totalKnown": True, "totalBytes": total, "downloadedBytes": downloaded,
            "layers": [{"digest": "sha256:" + "b" * 64, "mediaType": None, "totalBytes": total,
                        "downloadedBytes": downloaded, "state": state,
                        "startedAt": None, "updatedAt": None}]}],
        "unattributed": [],
    }


class Server:
    def __init__(self, binary, workdir, **env):
        self.port, self.mport = free_port(), free_port()
        full = {"PULLTRACE_HTTP_ADDR": f"127.0.0.1:{self.port}",
                "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{self.mport}",
                "PULLTRACE_AGENT_TOKEN": TOKEN, "PULLTRACE_LOG_LEVEL": "debug"}
        full.update({k: str(v) for k, v in env.items()})
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.mport}/metrics"
        self.daemon = Daemon("pulltrace-server", binary, Path(workdir) / "server.log", env=full)

    def start(self):
        def ready():
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        self.daemon.start(ready=ready)
        return self

    def post(self, body, token=TOKEN, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.url + "/api/v1/report", json=body, headers=headers, timeout=5, **kw)


class SSE:
    """A minimal event-stream reader on a raw socket (so a test controls reading)."""

    def __init__(self, port, path="/api/v1/events", last_id=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        hdr = f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
        if last_id is not None:
            hdr += f"Last-Event-ID: {last_id}\r\n"
        self.sock.sendall((hdr + "\r\n").encode())
        self.buf = b""
        self.events = []
        self.comments = []
        head = self._read_until(b"\r\n\r\n")
        self.headers = head
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.raw = b""

    def _read_until(self, marker):
        while marker not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _dechunk(self):
        while True:
            if b"\r\n" not in self.buf:
                return
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return
            self.raw += rest[:size]
            self.buf = rest[size + 2:]
            if size == 0:
                return

    def pump(self, timeout=10):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data
        self._dechunk()
        while b"\n\n" in self.raw:
            block, self.raw = self.raw.split(b"\n\n", 1)
            ev = {"data": []}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                k, _, v = line.partition(": ")
                if k == "data":
                    ev["data"].append(v)
                elif k:
                    ev[k] = v
            if "event" in ev:
                ev["data"] = json.loads("\n".join(ev["data"]))
                ev["id"] = int(ev["id"])
                self.events.append(ev)

    def wait(self, pred, timeout=20, what="event"):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what}; saw {[e['event'] for e in self.events]}")
            self.pump(timeout=max(0.1, deadline - time.monotonic()))

    def close(self):
        self.sock.close()


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="pt-server-e2e-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(server_binary, workdir):
    s = Server(server_binary, workdir, PULLTRACE_SSE_HEARTBEAT="500ms").start()
    yield s
    s.daemon.stop()


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
    assert server.post(report("node-a", 3, 1000), token=None).status_code == 401
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
    s = SSE(server.port)
    snap = s.wait(lambda e: e["event"] == "snapshot", what="snapshot")
    assert snap["data"]["v"] == 1 and snap["data"]["pulls"] == []
    server.post(report("node-a", 1, 0))
    started = s.wait(lambda e: e["event"] == "pull.started")
    assert started["data"]["pull"]["id"] == "node-a/p1"
    server.post(report("node-a", 2, 800))
    s.wait(lambda e: e["event"] == "pull.progress")
    last_seen = max(e["id"] for e in s.events)
    s.close()

    # Missed while disconnected:
    server.post(report("node-a", 3, 1600))
    server.post(report("node-a", 4, 2000, completed=True))
    r = SSE(server.port, last_id=last_seen)
    done = r.wait(lambda e: e["event"] == "pull.completed")
    ids = [e["id"] for e in r.events]
    assert ids[0] == last_seen + 1 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert not any(e["event"] == "snapshot" for e in r.events)
    assert done["data"]["pull"]["downloadedBytes"] == 2000
    # Heartbeats arrive.
    deadline = time.monotonic() + 5
    while "heartbeat" not in r.comments and time.monotonic() < deadline:
        r.pump()
    assert "heartbeat" in r.comments
    r.close()

    # Too old an id: a fresh snapshot holding the current state.
    r = SSE(server.port, last_id=5)
    snap = r.wait(lambda e: e["event"] == "snapshot")
    assert snap["data"]["pulls"][0]["state"] == "completed"
    r.close()

    text = requests.get(server.metrics_url, timeout=5).text
    assert 'pulltrace_agent_reports_total{result="applied"} 4' in text
    assert "pulltrace_pulls_total 1" in text
    assert 'pulltrace_pull_duration_seconds_bucket{le="5"} 1' in text
    assert "pulltrace_pull_bytes_total 2000" in text
    promtool = shutil.which("promtool")
    if promtool:
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_slow_and_hostile_clients_do_not_disturb(server_binary, workdir):
    srv = Server(server_binary, workdir, PULLTRACE_REQUEST_TIMEOUT="1s",
                 PULLTRACE_SSE_CLIENT_QUEUE="524288", PULLTRACE_REPORT_MIN_INTERVAL="0").start()
    try:
        good = SSE(srv.port)
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
            body = report("node-a", seq, seq * 10, total=100000)
            body["pulls"][0]["imageRef"] = "127.0.0.1/e2e/" + "x" * 900
            # 100 more layers, each progressing: 100 layer.progress events per report.
            body["pulls"][0]["layers"] += [
                {"digest": f"sha256:{i:064x}", "mediaType": "x" * 200, "totalBytes": 10 ** 9,
                 "downloadedBytes": seq, "state": "downloading", "startedAt": None,
                 "updatedAt": None} for i in range(100)]
            body["pulls"][0]["totalBytes"] += 100 * 10 ** 9
            body["pulls"][0]["downloadedBytes"] += 100 * seq
            assert srv.post(body).status_code == 200
            good.wait(lambda e, s=seq: "pull" in e["data"] and
                      e["data"]["pull"]["downloadedBytes"] == s * 110, timeout=10)
        got = [e for e in good.events if e["event"] in ("pull.started", "pull.progress")]
        assert len(got) >= 119
        # The slowloris client was cut off with a 408 (request timeout 1 s).
        slow.settimeout(5)
        data = slow.recv(4096)
        assert b"408" in data
        text = requests.get(srv.metrics_url, timeout=5).text
        assert "pulltrace_sse_clients_dropped_total 1" in text
        assert "pulltrace_sse_clients_active 1" in text
        slow.close()
        stalled.close()
        good.close()
    finally:
        srv.daemon.stop()


def test_sigterm_flushes_streams_and_exits(server_binary, workdir):
    srv = Server(server_binary, workdir).start()
    s = SSE(srv.port)
    s.wait(lambda e: e["event"] == "snapshot")
    t0 = time.monotonic()
    srv.daemon.proc.send_signal(signal.SIGTERM)
    with pytest.raises(EOFError):
        while True:
            s.pump(timeout=5)
    assert "server shutting down" in s.comments
    srv.daemon.proc.wait(timeout=5)
    assert time.monotonic() - t0 < 2.5
    assert srv.daemon.proc.poll() == 0


@pytest.mark.stack(rate=512 * KIB)
def test_real_agent_real_pull(stack, server_binary, cri_available):
    if not cri_available:
        pytest.skip("pt-cri-pull not built")
    srv = Server(server_binary, stack.dir, PULLTRACE_AGENT_TOKEN=TOKEN).start()
    try:
        app = stack.images.image("e2e/srv", "v1", layers=[1 * MIB, 1536 * KIB])
        s = SSE(srv.port)
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
        srv.daemon.stop()
