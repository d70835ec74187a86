"""Debian's Prometheus scrapes pulltrace-server while the real agent tracks a real pull in
containerd: after one completed pull, Prometheus' HTTP API answers with the values the
server's tables imply, knows each family's type, and `promtool check metrics` finds nothing
to complain about in the exposition, and every query docs/metrics.md gives operators runs
without an error. Prometheus runs privately on 127.0.0.1 with a temporary
configuration and TSDB directory, and is stopped by its PID. Nothing here asserts on speed."""
# ctest: TIMEOUT=300

import shutil
import subprocess

import pytest
import requests

import docblocks

from harness import free_port, wait_until

KIB = 1024
MIB = 1024 * 1024
NODE = "prom-node"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class Prometheus:
    def __init__(self, stack, target):
        self.dir = stack.dir / "prometheus"
        (self.dir / "data").mkdir(parents=True)
        cfg = self.dir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pulltrace\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.daemon = stack.http_daemon(
            "prometheus", PROMETHEUS, url=self.url,
            args=[f"--config.file={cfg}", f"--storage.tsdb.path={self.dir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{self.port}",
                  "--storage.tsdb.retention.time=1h", "--log.level=warn"])

    def query(self, expr):
        """The instant vector for `expr` as {frozenset(labels.items()): float}."""
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return {frozenset((k, v) for k, v in s["metric"].items() if k not in ("job", "instance")):
                float(s["value"][1]) for s in body["data"]["result"]}

    def scalar(self, expr):
        """The single value of `expr`, or None when the vector is empty."""
        v = self.query(expr)
        assert len(v) <= 1, (expr, v)
        return next(iter(v.values())) if v else None


@pytest.mark.stack(rate=1 * MIB)
def test_prometheus_scrapes_a_real_pull(stack, cri_available):
    srv = stack.server(env={"PULLTRACE_KUBERNETES": "off"})
    prom = Prometheus(stack, srv.metrics_addr)
    wait_until(lambda: prom.scalar('up{job="pulltrace"}') == 1, 30, what="the first scrape")
    targets = requests.get(prom.url + "/api/v1/targets", timeout=5).json()["data"]
    [target] = targets["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == ""
    assert prom.scalar("pulltrace_pulls_total") == 0

    img = stack.images.image("e2e/prom", "v1", layers=[1 * MIB, 1536 * KIB])
    agent = stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})
    pull = stack.cri_pull(img, background=True)
    done = wait_until(lambda: srv.pulls(state="completed"), 60, what="the completed pull")
    assert pull.result(timeout=60).returncode == 0
    # The agent stops: from now on the server's counters do not move.
    agent.stop()
    [p] = done
    assert p["manifestDigest"] == img.manifest_digest and p["node"] == NODE
    assert p["downloadedBytes"] == p["totalBytes"] == img.total_bytes
    duration = p["durationSeconds"]
    assert duration > 0
    applied = srv.metric("pulltrace_agent_reports_total", {"result": "applied"})
    assert applied >= 2

    # Prometheus catches up with the frozen counters.
    wait_until(lambda: prom.scalar('pulltrace_agent_reports_total{result="applied"}') == applied,
               30, what="a scrape after the agent stopped")
    assert prom.scalar("pulltrace_pulls_total") == 1
    assert prom.scalar("pulltrace_pulls_completed_total") == 1
    assert prom.scalar("pulltrace_pull_bytes_total") == img.total_bytes
    assert prom.scalar("pulltrace_pull_duration_seconds_count") == 1
    assert prom.scalar("pulltrace_pull_duration_seconds_sum") == pytest.approx(duration, abs=0.01)
    buckets = prom.query("pulltrace_pull_duration_seconds_bucket")
    les = sorted((float(dict(k)["le"]), v) for k, v in buckets.items())
    assert [le for le, _ in les] == [1, 5, 10, 30, 60, 120, 300, 600, float("inf")]
    # Cumulative: 0 below the pull's duration, 1 from the first bucket that holds it.
    assert [v for _, v in les] == [0.0 if le < duration else 1.0 for le, _ in les]
    assert prom.scalar("sum(pulltrace_pulls_active)") == 0
    assert prom.scalar('pulltrace_agent_reports_total{result="rejected"}') == 0
    assert prom.scalar("sum(pulltrace_pull_errors_total)") == 0
    assert prom.scalar("pulltrace_agents_connected") in (0, 1)  # lagging/lost after the stop
    assert prom.scalar('pulltrace_build_info{version!=""}') == 1
    # PromQL on top: the pull's bytes are a visible increase over the last minute.
    assert prom.scalar("increase(pulltrace_pull_bytes_total[1m])") > 0

    # The types Prometheus learnt from the # TYPE lines.
    meta = requests.get(prom.url + "/api/v1/metadata", timeout=5).json()["data"]
    want = {"pulltrace_pulls_active": "gauge", "pulltrace_pulls_total": "counter",
            "pulltrace_pull_duration_seconds": "histogram",
            "pulltrace_pull_bytes_total": "counter", "pulltrace_pull_errors_total": "counter",
            "pulltrace_agent_reports_total": "counter", "pulltrace_sse_clients_active": "gauge"}
    for name, kind in want.items():
        assert name in meta, name
        assert meta[name][0]["type"] == kind, (name, meta[name])
        assert meta[name][0]["help"], name

    # The lint on the server's exposition.
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=srv.metrics().text,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", \
        out.stdout + out.stderr

    # The queries docs/metrics.md gives operators run against this Prometheus and answer.
    queries = [b.text.strip() for b in docblocks.blocks("metrics.md") if b.lang == "promql"]
    assert len(queries) >= 8
    for expr in queries:
        r = requests.get(prom.url + "/api/v1/query", params={"query": expr}, timeout=5)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        assert not body.get("warnings"), (expr, body["warnings"])
    # They say what happened here: one pull, completed, none stalled or failed.
    assert prom.scalar("sum(pulltrace_pulls_active)") == 0
    assert prom.scalar("sum(pulltrace_pulls_active{state=\"stalled\"})") == 0
    assert prom.scalar("sum(increase(pulltrace_pull_bytes_total[1d]))") > 0

    status, _ = prom.daemon.stop()
    assert status == 0
