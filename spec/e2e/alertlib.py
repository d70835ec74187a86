"""Helpers for the alert and Prometheus e2e tests: pulltrace-server started on a Stack, an
event-stream reader, and a webhook receiver that records what the server POSTs (Alertmanager
API v2 bodies) and can answer with failures first."""

import json
import re
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from harness import free_port


class ServerOnStack:
    """pulltrace-server started through stack.daemon() (stopped by stack.close(), its log
    printed with the other component logs when a test fails)."""

    def __init__(self, stack, env=None):
        self.port, self.mport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.mport}/metrics"
        full = {"PULLTRACE_HTTP_ADDR": f"127.0.0.1:{self.port}",
                "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{self.mport}",
                "PULLTRACE_LOG_LEVEL": "debug", "PULLTRACE_KUBERNETES": "off"}
        full.update({k: str(v) for k, v in (env or {}).items()})

        def ready():
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        self.daemon = stack.daemon("pulltrace-server", env=full, ready=ready)

    def pulls(self, **params):
        return requests.get(self.url + "/api/v1/pulls", params=params, timeout=5).json()["pulls"]

    def metrics(self):
        return requests.get(self.metrics_url, timeout=5).text

    def metric(self, name, labels=None):
        """The value of one sample of the exposition (None when absent)."""
        return metric_value(self.metrics(), name, labels)

    def log_json(self):
        """The server's JSON log lines, parsed (other lines skipped)."""
        out = []
        for line in self.daemon.log_lines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def metric_value(text, name, labels=None):
    want = labels or {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if got == want:
            return float(m.group(4))
    return None


class EventStream:
    """GET /api/v1/events read by a background thread; `events` holds every parsed event
    ({"id", "event", "data"}) in arrival order."""

    def __init__(self, url):
        self.events = []
        self.cond = threading.Condition()
        self.error = None
        self.resp = requests.get(url + "/api/v1/events", stream=True, timeout=(5, 30),
                                 headers={"Accept": "text/event-stream"})
        self.resp.raise_for_status()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        cur = {}
        try:
            for raw in self.resp.iter_lines(chunk_size=1, decode_unicode=False):
                line = raw.decode()
                if line == "":
                    if "event" in cur:
                        ev = {"id": int(cur["id"]), "event": cur["event"],
                              "data": json.loads(cur["data"])}
                        with self.cond:
                            self.events.append(ev)
                            self.cond.notify_all()
                    cur = {}
                elif not line.startswith(":"):
                    k, _, v = line.partition(":")
                    cur[k] = v[1:] if v.startswith(" ") else v
        except Exception as e:  # closed by close(), or the server went away
            self.error = e
        with self.cond:
            self.cond.notify_all()

    def wait(self, pred, timeout=30, what="event"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or not self.thread.is_alive():
                    raise AssertionError(
                        f"no {what} within {timeout}s; saw "
                        f"{[(e['event'], e['data'].get('alert', {}).get('name')) for e in self.events][-40:]}"
                        f" (reader: {self.error})")
                self.cond.wait(min(left, 0.5))

    def of(self, kind):
        with self.cond:
            return [e for e in self.events if e["event"] == kind]

    def close(self):
        self.resp.close()


class WebhookReceiver:
    """Records every POST (an Alertmanager API v2 body); answers `fail_status` to the first
    `fail_first` requests, 200 afterwards."""

    def __init__(self, fail_first=0, fail_status=503):
        self.requests = []  # (monotonic time, path, headers, parsed body or None, status)
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.cond = threading.Condition()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with rec.cond:
                    status = 200
                    if rec.fail_left > 0:
                        rec.fail_left -= 1
                        status = rec.fail_status
                    rec.requests.append((time.monotonic(), self.path, dict(self.headers),
                                         parsed, status))
                    rec.cond.notify_all()
                reply = b'{"status":"success"}' if status == 200 else b'{"error":"injected"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v2/alerts"

    def wait_requests(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {n} webhook requests "
                                         f"in {timeout}s")
                self.cond.wait(left)
            return list(self.requests)

    def alerts(self, status=200):
        """Every alert object of the requests answered with `status`."""
        with self.cond:
            return [a for (_, _, _, body, st) in self.requests if st == status
                    for a in (body or [])]

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_alertmanager_v2(body):
    """Asserts that `body` is what Alertmanager's POST /api/v2/alerts accepts: a JSON array
    of postableAlert objects (labels required, string-valued; annotations string-valued;
    startsAt/endsAt RFC 3339 date-times; generatorURL a string)."""
    assert isinstance(body, list) and body, body
    for a in body:
        assert set(a) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}, a
        assert isinstance(a["labels"], dict) and a["labels"].get("alertname"), a
        for k, v in list(a["labels"].items()) + list(a.get("annotations", {}).items()):
            assert LABEL_NAME.match(k) and isinstance(v, str), (k, v)
        for k in ("startsAt", "endsAt"):
            if k in a:
                datetime.fromisoformat(a[k].replace("Z", "+00:00"))
        if "generatorURL" in a:
            assert isinstance(a["generatorURL"], str)
