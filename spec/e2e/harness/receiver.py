"""A stand-in for an endpoint that receives JSON POSTs: pulltrace-server's report ingest
(every report the agent POSTs), or an Alertmanager webhook (every alert batch the server
POSTs).

Tests read the bodies in order, wait for one that satisfies a predicate, and make the
endpoint fail on demand (5xx) to exercise the sender's backoff and retries.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from .httpd import JsonHandler

REPORT_PATH = "/api/v1/report"


@dataclass
class Attempt:
    """One request to the endpoint, answered or refused."""
    time: float              # time.monotonic() on arrival
    path: str
    headers: dict
    status: int
    body: bytes
    report: dict = None      # parsed JSON when it was accepted


@dataclass
class _Failure:
    status: int
    remaining: object        # int or None (= until cleared)
    body: bytes = field(default=b'{"error":"injected failure"}')


class ReportReceiver:
    """HTTP server on 127.0.0.1 (ephemeral port by default), one thread per request.

    `reports` holds the parsed JSON of every accepted POST to `path` (the agent's
    /api/v1/report unless told otherwise), in arrival order; `attempts` every request,
    including refused ones, with arrival times and bodies.
    """

    def __init__(self, port=0, token=None, on_report=None, path=REPORT_PATH):
        self.path = path
        self.token = token
        self.on_report = on_report
        self.reports = []
        self.attempts = []
        self._failure = None
        self._cond = threading.Condition()
        receiver = self

        class Handler(JsonHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, reply, report = receiver._handle(self.path, dict(self.headers), body)
                self.send_json(status, reply)
                if report is not None and receiver.on_report:
                    receiver.on_report(report)

            def do_GET(self):
                if self.path == "/healthz":
                    self.send_json(200, b'{"status":"ok"}')
                else:
                    self.send_json(404, b'{"error":"not found"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        """Base URL for PULLTRACE_SERVER_URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self):
        """The full URL POSTs go to (e.g. for PULLTRACE_ALERT_WEBHOOK_URL)."""
        return self.url + self.path

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread:
            self.server.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- failure injection ---------------------------------------------------------------
    def fail(self, status=503, count=None):
        """Answer the next `count` reports (all, when None) with `status`."""
        with self._cond:
            self._failure = _Failure(status=status, remaining=count)

    def recover(self):
        """Accept reports again."""
        with self._cond:
            self._failure = None

    # -- request handling ----------------------------------------------------------------
    def _handle(self, path, headers, body):
        now = time.monotonic()
        with self._cond:
            status, reply, report = 200, b'{"status":"ok"}', None
            if path != self.path:
                status, reply = 404, b'{"error":"not found"}'
            elif self.token is not None and \
                    headers.get("Authorization") != f"Bearer {self.token}":
                status, reply = 401, b'{"error":"unauthorized"}'
            elif self._failure is not None:
                status, reply = self._failure.status, self._failure.body
                if self._failure.remaining is not None:
                    self._failure.remaining -= 1
                    if self._failure.remaining <= 0:
                        self._failure = None
            else:
                try:
                    report = json.loads(body)
                except ValueError as e:
                    status = 400
                    reply = json.dumps({"error": f"invalid JSON: {e}"}).encode()
                    report = None
            a = Attempt(time=now, path=path, headers=headers, status=status, body=body,
                        report=report)
            self.attempts.append(a)
            if report is not None:
                self.reports.append(report)
            self._cond.notify_all()
            return status, reply, report

    # -- queries -------------------------------------------------------------------------
    def snapshot(self):
        """A copy of the accepted reports so far."""
        with self._cond:
            return list(self.reports)

    def wait_for(self, predicate, timeout=10.0, start=0, what="a matching report"):
        """Waits until a report at index >= `start` satisfies predicate(report); returns it.

        Raises TimeoutError with the last report received, to show what the agent did send.
        """
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.reports):
                    if predicate(self.reports[i]):
                        return self.reports[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    last = json.dumps(self.reports[-1], indent=1)[:4000] \
                        if self.reports else "none"
                    raise TimeoutError(
                        f"no report matched ({what}) within {timeout}s; "
                        f"{len(self.reports)} reports, last: {last}")
                self._cond.wait(left)

    def wait_count(self, n, timeout=10.0):
        """Waits until at least `n` reports were accepted; returns them."""
        return self._wait_len(self.reports, n, timeout, "reports")

    def wait_attempts(self, n, timeout=10.0):
        """Waits until at least `n` requests arrived (accepted or not); returns them."""
        return self._wait_len(self.attempts, n, timeout, "requests")

    def _wait_len(self, items, n, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(items)} of {n} {what} in {timeout}s")
                self._cond.wait(left)
            return list(items)


def find_pull(report, manifest_digest=None, image_ref=None):
    """The pull in `report` with that manifest digest and/or imageRef, or None."""
    for p in report.get("pulls") or []:
        if manifest_digest and p.get("manifestDigest") != manifest_digest:
            continue
        if image_ref and p.get("imageRef") != image_ref:
            continue
        return p
    return None


def summarize(report):
    """A readable, multi-line summary of one report (the demo prints these)."""
    lines = [f"[{report.get('timestamp')}] node {report.get('nodeName')} "
             f"seq {report.get('seq')}: {len(report.get('pulls') or [])} pulls, "
             f"{len(report.get('unattributed') or [])} unattributed"]
    for p in report.get("pulls") or []:
        total = p.get("totalBytes") or 0
        done = p.get("downloadedBytes") or 0
        pct = f"{100.0 * done / total:5.1f}%" if total else "  ?  "
        state = "completed" if p.get("completedAt") else "pulling"
        states = {}
        for layer in p.get("layers") or []:
            states[layer.get("state")] = states.get(layer.get("state"), 0) + 1
        layer_txt = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        lines.append(f"  {p.get('imageRef')} {(p.get('manifestDigest') or '')[:19]} "
                     f"{state} {pct} {done / 1048576:.1f}/{total / 1048576:.1f} MiB "
                     f"[{layer_txt}]")
    for u in report.get("unattributed") or []:
        lines.append(f"  unattributed {u.get('ref')} "
                     f"{u.get('downloadedBytes')}/{u.get('totalBytes')}")
    return "\n".join(lines)
