"""The one wrapper of pulltrace-server for the tests, the demo and the benches: the process
(a `Daemon`: stopped by its PID, its log kept), its addresses, and what a client does with
it: post a report, read the REST API, the metrics, the event stream, the JSON log.
`Stack.server()` makes one on a stack (stopped with it, its log printed when a test fails);
`Server(binary, log_path)` makes one anywhere."""

import re

import requests

from .daemon import Daemon
from .events import EventStream
from .proc import free_port, wait_until


class Server(Daemon):
    """pulltrace-server listening on `http_addr` and `metrics_addr` (127.0.0.1 on free ports
    when not given), with `env` added to: the two addresses, PULLTRACE_LOG_LEVEL=debug and,
    with `token`, PULLTRACE_AGENT_TOKEN (which post() then sends). `wrap` is a command the
    server runs under (e.g. ["taskset", "-c", "0"]; it must exec the server, so the PID is
    the server's). `tls` = (cert, key, ca file): the API port speaks TLS (PULLTRACE_TLS_CERT,
    PULLTRACE_TLS_KEY), `url` is https:// and the clients here verify the server with the CA.
    `report`: reports have a port of their own (PULLTRACE_REPORT_ADDR, on a free port), at
    `report_url`, where post() sends them; else `report_url` is `url`.
    A `Daemon`: stop(), kill(), running(), log(), rss_kib()."""

    def __init__(self, binary, log_path, env=None, token=None, http_addr=None,
                 metrics_addr=None, wrap=(), tls=None, report=False):
        self.http_addr = http_addr or f"127.0.0.1:{free_port()}"
        self.metrics_addr = metrics_addr or f"127.0.0.1:{free_port()}"
        # tls=(cert, key, ca): the API port speaks TLS and the clients here verify it with ca.
        self.ca = str(tls[2]) if tls else None
        self.verify = self.ca or True
        scheme = 'https' if tls else 'http'
        self.url = f"{scheme}://{self.http_addr}"
        self.report_addr = f"127.0.0.1:{free_port()}" if report else None
        self.report_url = f"{scheme}://{self.report_addr}" if report else self.url
        self.metrics_url = f"http://{self.metrics_addr}/metrics"
        self.token = token
        full = {"PULLTRACE_HTTP_ADDR": self.http_addr,
                "PULLTRACE_METRICS_ADDR": self.metrics_addr,
                "PULLTRACE_LOG_LEVEL": "debug"}
        if report:
            full["PULLTRACE_REPORT_ADDR"] = self.report_addr
        if token:
            full["PULLTRACE_AGENT_TOKEN"] = token
        if tls:
            full["PULLTRACE_TLS_CERT"], full["PULLTRACE_TLS_KEY"] = str(tls[0]), str(tls[1])
        full.update(env or {})
        program, args = (wrap[0], [*wrap[1:], binary]) if wrap else (binary, [])
        super().__init__("pulltrace-server", program, log_path, args=args, env=full)

    @property
    def port(self):
        return int(self.http_addr.rpartition(":")[2])

    def start(self, timeout=15.0):
        """Starts the server and waits until /healthz answers 200 (HarnessError with its log
        when it exits or does not answer in time)."""
        return super().start(ready=self.healthy, timeout=timeout)

    # -- what a client sees ------------------------------------------------------------------
    def healthy(self):
        try:
            return requests.get(self.url + "/healthz", timeout=1,
                                verify=self.verify).status_code == 200
        except requests.RequestException:
            return False

    def kube_ready(self):
        """True when /readyz says the Kubernetes watch has synced."""
        try:
            checks = requests.get(self.url + "/readyz", timeout=5,
                                  verify=self.verify).json()["checks"]
        except (requests.RequestException, ValueError, KeyError):
            return False
        return any(c.get("name") == "kubernetes" and c.get("ok") for c in checks)

    def wait_kube_ready(self, timeout=20):
        wait_until(self.kube_ready, timeout, what="the kubernetes readiness check")
        return self

    def post(self, body, token=None, session=None, timeout=5, url=None, **kw):
        """POSTs an agent report to `url` (default: `report_url`); `token` defaults to the
        server's (False: none at all)."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kw.setdefault("verify", self.verify)
        return (session or requests).post((url or self.report_url) + "/api/v1/report",
                                          json=body, headers=headers, timeout=timeout, **kw)

    def pulls(self, **params):
        """GET /api/v1/pulls with `params` as the query: the list of pulls, every page
        of it (the server pages its lists: `limit`, `continue`)."""
        return self.list_all("pulls", **params)

    def list_all(self, member, **params):
        """Every item of GET /api/v1/<member> (pulls, nodes), following the continue
        tokens page after page."""
        items, query = [], dict(params)
        while True:
            doc = requests.get(f"{self.url}/api/v1/{member}", params=query, timeout=10,
                               verify=self.verify).json()
            items += doc[member]
            token = doc.get("metadata", {}).get("continue")
            if not token:
                return items
            query = dict(params, limit=query.get("limit", 1000), **{"continue": token})

    def find(self, pred, **params):
        """The first pull of pulls(**params) for which pred(pull) is true, or None."""
        return next((p for p in self.pulls(**params) if pred(p)), None)

    def events(self, last_id=None, path="/api/v1/events", headers=None):
        """A new reader of the event stream (close() it, or use it in a `with`); `path` may
        carry the subscription's query (/api/v1/events?types=rollout.summary), `headers` are
        added to its request."""
        return EventStream(self.url, last_id=last_id, path=path, headers=headers, ca=self.ca)

    def metrics(self):
        """One scrape of the metrics endpoint."""
        return Metrics(requests.get(self.metrics_url, timeout=10).text)

    def metric(self, name, labels=None):
        """The value of one sample in a fresh scrape (None when absent)."""
        return self.metrics().value(name, labels)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A Prometheus text exposition: `text` as scraped, value() of one sample."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and not line.startswith("#"):
                labels = frozenset(_LABEL.findall(m.group(3) or ""))
                self.samples[(m.group(1), labels)] = float(m.group(4))

    def value(self, name, labels=None):
        """The sample `name` with exactly `labels` (a dict), or None when absent."""
        return self.samples.get((name, frozenset((labels or {}).items())))
