#!/usr/bin/python3
"""pulltrace-server under load: report ingest, event-stream fan-out, memory.

Usage: /usr/bin/python3 bench/server/bench_server.py [BUILD_DIR] [SCENARIO...]
       SCENARIO: ingest paced nginx fanout100 fanout1000 memory ingest-history paced-history
                 history-size (default: all)

Every scenario starts a fresh pulltrace-server on free 127.0.0.1 ports, pinned to CPU 0
(`taskset -c 0`); the load tools (wrk with bench/server/report.lua, bench/server/sse_clients.py)
run pinned to CPU 1, so "one core" means the server's. Reports are those of a real agent:
NODES nodes x 5 pulls x 8 layers (~11 KiB each), pulls progressing and completing. The server
runs with PULLTRACE_REPORT_MIN_INTERVAL=0 (no per-node 429s: the load tool sends faster than
one report per node per 100 ms), PULLTRACE_KUBERNETES=off and PULLTRACE_LOG_LEVEL=warn.

  ingest      wrk -t1 -c16 for 15 s, 500 nodes, as fast as the server answers
  nginx       the same wrk command against nginx answering 204 to every POST (same core)
  paced       500 nodes each reporting once a second (wrk -c500 with a 1 s delay) for 20 s:
              latency at the realistic rate and the server's CPU
  fanout100   100 event-stream clients while 20 nodes report once a second (20 s)
  fanout1000  1,000 event-stream clients: memory per client, then 2 nodes reporting once
              a second (20 s)
  memory      1,000 nodes x 5 pulls x 8 layers in flight = 5,000 pulls: RSS, and the size
              and time of GET /api/v1/pulls
  ingest-history, paced-history
              ingest and paced with PULLTRACE_DATA_DIR (the history's writer thread runs on
              the server's core too): the cost of persistence
  history-size
              100,000 finished pulls of 8 layers through POST /api/v1/report (50 a report):
              the size of history.db

Prints one JSON object per scenario (and writes them to bench-server.json in the build dir).
Nothing here is a test: the figures go to docs/performance.md.
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "spec" / "e2e"))

from harness import Proc, Server, cpu_seconds, find_binary, free_port, reports, wait_until  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"
SERVER_CPU, LOAD_CPU = "0", "1"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(build, work, scenario, **env):
    """pulltrace-server pinned to SERVER_CPU, its log in `work`."""
    return Server(find_binary("pulltrace-server", build), Path(work) / f"server-{scenario}.log",
                  env=dict({"PULLTRACE_LOG_LEVEL": "warn", "PULLTRACE_KUBERNETES": "off",
                            "PULLTRACE_REPORT_MIN_INTERVAL": "0"}, **env),
                  wrap=[TASKSET, "-c", SERVER_CPU]).start(timeout=10)


def wrk(url, nodes, seconds, conns, pace_ms=0, rounds=0, prefix="bench-node", extra_env=None):
    env = dict(os.environ, PT_THREADS="1", PT_PACE_MS=str(pace_ms), PT_ROUNDS=str(rounds))
    env.update(extra_env or {})
    argv = ["taskset", "-c", LOAD_CPU, WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            "--timeout", "10s", "-s", str(HERE / "report.lua"), url, "--",
            str(nodes), "5", "8", str(pace_ms), prefix]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, preexec_fn=raise_nofile,
                         timeout=seconds + 120)
    m = re.search(r"^WRK_JSON (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    res = json.loads(m.group(1))
    res["command"] = " ".join(argv[3:])
    res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    return res


def cpu_during(pid, fn):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    res = fn()
    c1, t1 = cpu_seconds(pid), time.monotonic()
    return res, round(100.0 * (c1 - c0) / (t1 - t0), 1), c1 - c0


def data_dir(work, scenario):
    """A fresh PULLTRACE_DATA_DIR for a scenario with the history on."""
    d = Path(work) / f"data-{scenario}"
    d.mkdir()
    return {"PULLTRACE_DATA_DIR": str(d)}


def history_figures(srv):
    m = srv.metrics()
    return {"history_records_written": m.value("pulltrace_history_records_written_total"),
            "history_transactions": m.value("pulltrace_history_transactions_total"),
            "history_write_errors": m.value("pulltrace_history_write_errors_total"),
            "history_db_bytes": m.value("pulltrace_history_database_bytes"),
            "events_sent_late": m.value("pulltrace_history_events_late_total")}


def scenario_ingest(build, work, history=False):
    name = "ingest-history" if history else "ingest"
    srv = start_server(build, work, name, **(data_dir(work, name) if history else {}))
    try:
        res, cpu, cpu_s = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", 500, 15, 16))
        m = srv.metrics()
        applied = m.value("pulltrace_agent_reports_total", {"result": "applied"})
        extra = history_figures(srv) if history else {}
        return {"scenario": name, "nodes": 500, "pulls_per_report": 5, "layers_per_pull": 8,
                "reports_per_sec": res["rps"], "latency_us": res["latency_us"],
                "non2xx": res["non2xx"], "mean_body_bytes": res["mean_body_bytes"],
                "server_cpu_percent": cpu,
                "server_cpu_us_per_report": round(1e6 * cpu_s / max(1, applied), 1),
                "applied": applied, "pulls_in_tables": m.value("pulltrace_pulls_total"),
                "events_published": m.value("pulltrace_sse_events_total"),
                "rss_kib_after": srv.rss_kib(), "wrk": res["command"], **extra}
    finally:
        srv.stop()


def scenario_nginx(build, work):
    port = free_port()
    d = Path(work) / "nginx"
    (d / "logs").mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 2m;
  client_body_buffer_size 1m;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 204; }}
  }}
}}
""")
    p = Proc("nginx", ["taskset", "-c", SERVER_CPU, NGINX, "-p", str(d), "-c", str(conf)],
             d / "logs" / "stdout.log").start()
    try:
        wait_until(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST",
                                           f"http://127.0.0.1:{port}/"]).returncode == 0,
                   10, what="nginx")
        kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        worker = int(kids[0])
        res, cpu, cpu_s = cpu_during(worker, lambda: wrk(f"http://127.0.0.1:{port}/api/v1/report",
                                                         500, 15, 16))
        # wrk's own core is the limit here (it builds every report body in Lua): the CPU
        # time nginx spends per request is the figure to compare.
        return {"scenario": "nginx-204", "requests_per_sec": res["rps"],
                "worker_cpu_percent": cpu,
                "worker_cpu_us_per_request": round(1e6 * cpu_s / max(1, res["requests"]), 1),
                "latency_us": res["latency_us"], "mean_body_bytes": res["mean_body_bytes"],
                "wrk": res["command"]}
    finally:
        p.stop()


def scenario_paced(build, work, history=False):
    name = "paced-history" if history else "paced"
    srv = start_server(build, work, name, **(data_dir(work, name) if history else {}))
    try:
        res, cpu, cpu_s = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", 500, 20, 500,
                                                          pace_ms=1000))
        applied = srv.metric("pulltrace_agent_reports_total", {"result": "applied"})
        extra = history_figures(srv) if history else {}
        return {"scenario": name, "nodes": 500, "reports_per_sec": res["rps"],
                "latency_us": res["latency_us"], "non2xx": res["non2xx"],
                "server_cpu_percent": cpu,
                "server_cpu_us_per_report": round(1e6 * cpu_s / max(1, applied), 1),
                "rss_kib_after": srv.rss_kib(),
                "wrk": "PT_PACE_MS=1000 " + res["command"], **extra}
    finally:
        srv.stop()


def scenario_history_size(build, work, pulls=100_000, per_report=50, nodes=100):
    """The history's size per 100,000 finished pulls: reports of `per_report` completed pulls
    of 8 layers each (new ids every report, as many nodes), through the real report path;
    PULLTRACE_HISTORY_TTL=1s so they leave the tables and live on in the history only."""
    d = data_dir(work, "history-size")
    srv = start_server(build, work, "history-size", PULLTRACE_HISTORY_TTL="1s",
                       PULLTRACE_MAX_BODY="4194304", **d)
    session = requests.Session()
    try:
        t0 = time.monotonic()
        seq = {}
        for r in range(pulls // per_report):
            node = f"size-node-{r % nodes}"
            seq[node] = seq.get(node, 0) + 1
            now = time.time()
            batch = []
            for i in range(per_report):
                n = r * per_report + i
                layers = [reports.layer(reports.sha256(n * 8 + k), 3_000_000 + k * 1000,
                                        3_000_000 + k * 1000,
                                        media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                                        started=now - 20, updated=now - 1) for k in range(8)]
                batch.append(reports.pull(f"{node}/pull-{n}", f"registry.example.com/team-{n % 50}/"
                                          f"service-{n % 400}:v{n % 7}", reports.sha256(10**9 + n),
                                          layers, started=now - 20, completed=now - 1))
            resp = session.post(srv.url + "/api/v1/report",
                                json=reports.report(node, seq[node], batch), timeout=60)
            resp.raise_for_status()
        wall = time.monotonic() - t0
        wait_until(lambda: srv.metric("pulltrace_history_records_written_total") >= pulls
                   and srv.metric("pulltrace_history_queue_depth") == 0, 600, interval=1,
                   what="the history writer")
        figures = history_figures(srv)
    finally:
        srv.stop()
    db = Path(d["PULLTRACE_DATA_DIR"]) / "history.db"
    # After a clean stop SQLite has checkpointed the WAL into the database file.
    size = db.stat().st_size
    wal = db.with_name("history.db-wal")
    return {"scenario": "history-size", "pulls": pulls, "layers_per_pull": 8,
            "db_bytes": size, "wal_bytes_after_stop": wal.stat().st_size if wal.exists() else 0,
            "bytes_per_pull": round(size / pulls), "mib_per_100k_pulls": round(size / pulls * 1e5 / 2**20, 1),
            "generate_seconds": round(wall, 1), **figures}


def fanout(build, work, clients, nodes, seconds=20):
    srv = start_server(build, work, f"fanout{clients}", PULLTRACE_MAX_CONNECTIONS=clients + 1000)
    try:
        rss0 = srv.rss_kib()
        ready = Path(work) / f"sse-ready-{clients}"
        sse = subprocess.Popen(["taskset", "-c", LOAD_CPU, "/usr/bin/python3",
                                str(HERE / "sse_clients.py"), str(srv.port), str(clients),
                                str(seconds + 2), str(ready)],
                               stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        try:
            wait_until(ready.exists, 60, what="SSE clients connected")
            time.sleep(1)
            rss1 = srv.rss_kib()
            m0 = srv.metrics()
            res, cpu, _ = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", nodes,
                                                          seconds, nodes, pace_ms=1000))
            m1 = srv.metrics()
            out, _ = sse.communicate(timeout=120)
        finally:
            if sse.poll() is None:
                sse.kill()
                sse.wait()
        got = json.loads(re.search(r"^SSE_JSON (.*)$", out, re.M).group(1))
        published = m1.value("pulltrace_sse_events_total") - \
            m0.value("pulltrace_sse_events_total")
        wall = res["duration_us"] / 1e6
        return {"scenario": f"fanout{clients}", "clients": clients, "nodes": nodes,
                "reports_per_sec": res["rps"],
                "events_published_per_sec": round(published / wall, 1),
                "events_delivered_per_sec": got["events_per_sec"],
                "delivered_bytes_per_sec": round(got["bytes"] / got["seconds"]),
                "delivery_delay_ms": got["delay_ms"],
                "clients_dropped": m1.value("pulltrace_sse_clients_dropped_total"),
                "clients_closed_seen_by_client": got["closed_by_server"],
                "server_cpu_percent": cpu, "report_latency_us": res["latency_us"],
                "rss_kib_no_clients": rss0, "rss_kib_with_clients": rss1,
                "rss_kib_per_client": round((rss1 - rss0) / clients, 1),
                "rss_kib_after": srv.rss_kib(),
                "command": f"sse_clients.py PORT {clients} {seconds + 2} + "
                           f"PT_PACE_MS=1000 {res['command']}"}
    finally:
        srv.stop()


def scenario_memory(build, work):
    srv = start_server(build, work, "memory")
    try:
        rss0 = srv.rss_kib()
        # One report per node: 1,000 nodes x 5 pulls in flight.
        res = wrk(srv.url + "/api/v1/report", 1000, 60, 4, rounds=1, prefix="mem-node")
        m = srv.metrics()
        tracked = sum(m.value("pulltrace_pulls_tracked", {"state": s}) or 0
                      for s in ("pulling", "stalled", "completed", "failed", "lost"))
        rss1 = srv.rss_kib()
        t0 = time.monotonic()
        n, size = 0, 0
        while time.monotonic() - t0 < 5:
            r = requests.get(srv.url + "/api/v1/pulls", timeout=30)
            size = len(r.content)
            n += 1
        per_get = (time.monotonic() - t0) / n
        return {"scenario": "memory", "pulls_tracked": tracked, "layers_per_pull": 8,
                "rss_kib_empty": rss0, "rss_kib_5000_pulls": rss1,
                "kib_per_pull": round((rss1 - rss0) / max(1, tracked), 2),
                "get_pulls_bytes": size, "get_pulls_ms": round(per_get * 1000, 1),
                "wrk": "PT_ROUNDS=1 " + res["command"]}
    finally:
        srv.stop()


SCENARIOS = {
    "ingest": scenario_ingest,
    "nginx": scenario_nginx,
    "paced": scenario_paced,
    "fanout100": lambda b, w: fanout(b, w, 100, 20),
    "fanout1000": lambda b, w: fanout(b, w, 1000, 2),
    "memory": scenario_memory,
    "ingest-history": lambda b, w: scenario_ingest(b, w, history=True),
    "paced-history": lambda b, w: scenario_paced(b, w, history=True),
    "history-size": scenario_history_size,
}


def main():
    args = sys.argv[1:]
    build = Path(args.pop(0) if args and not args[0] in SCENARIOS else ROOT / "build").resolve()
    names = args or list(SCENARIOS)
    results = []
    with tempfile.TemporaryDirectory(prefix="pt-bench-server-") as work:
        for name in names:
            r = SCENARIOS[name](build, work)
            print(json.dumps(r), flush=True)
            results.append(r)
    (build / "bench-server.json").write_text(json.dumps(results, indent=1))
    ing = next((r for r in results if r["scenario"] == "ingest"), None)
    ngx = next((r for r in results if r["scenario"] == "nginx-204"), None)
    if ing and ngx:
        print(json.dumps({"cpu_per_request_pulltrace_over_nginx_204": round(
            ing["server_cpu_us_per_report"] / ngx["worker_cpu_us_per_request"], 1)}))


if __name__ == "__main__":
    main()
