#!/usr/bin/python3
"""pulltrace-server under load: report ingest, event-stream fan-out, memory.

Usage: /usr/bin/python3 bench/server/bench_server.py [BUILD_DIR] [SCENARIO...]
       SCENARIO: saturation ingest ingest-reader nginx paced fanout100 fanout1000 fanout10000
                 fanout10000-summaries fanout10000-coalesced fanout10000-remote-rx memory tables
                 rollout
                 ingest-history paced-history history-size history-size-no-events
                 history-retention (default: all)

Every scenario starts a fresh pulltrace-server on free 127.0.0.1 ports, pinned to CPU 0
(`taskset -c 0`); the load tools (wrk with bench/server/report.lua, bench-sse-fanout,
bench-rollout) run pinned to CPU 1, so "one core" means the server's. Reports are those of a real agent:
NODES nodes x 5 pulls x 8 layers (~11 KiB each), pulls progressing and completing. The server
runs with PULLTRACE_REPORT_MIN_INTERVAL=0 (no per-node 429s: the load tool sends faster than
one report per node per 100 ms), PULLTRACE_KUBERNETES=off and PULLTRACE_LOG_LEVEL=warn.

  saturation  ingest and nginx in turn, 4 x 10 s each: the CPU ratio per pair (the machine's
              other load changes between pairs; each ratio compares neighbours)
  ingest      wrk -t1 -c16 for 15 s, 500 nodes, as fast as the server answers
  ingest-reader
              the same with one event-stream client reading the full stream (every event
              written and sent; without a reader the server numbers events but skips writing)
  nginx       the same wrk command against nginx answering 204 to every POST (same core)
  paced       500 nodes each reporting once a second (wrk -c500 with a 1 s delay) for 20 s:
              latency at the realistic rate and the server's CPU
  fanout100   100 event-stream clients while 20 nodes report once a second (20 s)
              (in every fanout scenario a pull downloads 3 of its layers at a time, as containerd
              does by default, so its events carry those that moved; PT_LAYERS_AT_ONCE=N sets
              another number, 0 moves all 8 in every report as the ingest scenarios do)
  fanout1000  1,000 event-stream clients: memory per client, then 2 nodes reporting once
              a second (20 s)
  fanout10000 10,000 event-stream clients (bench-sse-fanout, a C client on one libuv loop;
              its CPU is reported), then 2 nodes reporting once a second (20 s): the delivery
              delay as the clients see it (all events, by type, and the first 3 s apart: the
              first passes to 10,000 sockets just connected are the slowest); as readers with
              a core of their own see it ("probes": one client in 50, read by a thread of its
              own at real-time priority as soon as its socket has data, where the one loop
              reading the other 9,800 sockets reads them one after another and so counts its
              own queue in their delays); and as the server sees it
              (pulltrace_sse_write_wait_seconds: from publication to the write to the kernel,
              for the whole run and after the first 3 s; its share over 100 ms is exact, its
              p50/p99 interpolated in its buckets).
              Then the reference: the same loop passes (recorded from the stream meanwhile)
              replayed through nginx with the nchan module (Debian's libnginx-mod-nchan, a
              pub/sub server) to 10,000 clients of the same client
  fanout10000-summaries
              the same, the clients subscribed to rollout summaries only (types=rollout.summary)
  fanout10000-coalesced
              fanout10000 (and its nchan reference) with the clients reading in batches: the
              load tool sleeps 1 ms after each poll, so that the sockets written meanwhile are
              read together, as a reader machine's network card coalesces its interrupts (the
              pause is part of every delay measured). On loopback each write to an idle client
              otherwise wakes the client's core from the server's, and each read costs the
              client a poll of its own, ~10 us a socket on each side
  fanout10000-remote-rx
              fanout10000 (and its nchan reference) with loopback's receive processing steered
              to the load tool's core (RPS on lo; root; the old mask is restored): on loopback
              the kernel otherwise runs every reader's TCP receive path and wake-up on the
              writer's core, work that over a network happens on the readers' machines.
              The load tool's core then runs 10,000 readers' network stacks as well as their
              reads: the probes' delays are what readers on their own machines would see.
              That core's receive queue (net.core.netdev_max_backlog) is raised from 1,000 to
              65,536 packets meanwhile (restored afterwards): a pass overflows 1,000, and a
              packet dropped there reaches its reader when TCP resends it, 200 ms or more later
  memory      1,000 nodes x 5 pulls x 8 layers in flight = 5,000 pulls: RSS, and the size
              and time of GET /api/v1/pulls
  tables      100,000 pulls (5,000 nodes x 20 pulls x 8 layers): resident memory per pull,
              then paging through GET /api/v1/pulls with limit=1000: loop iterations over 10 ms
  rollout     5,000 nodes each reporting one pull of one image (8 layers, moving) once a second
              for 70 s, default rate limit: server CPU, report latency, rejections, loop
              iterations over 10 ms, the pulls in the API and the rollout's summaries on the
              event stream. The load is bench-rollout (bench/server/rollout_load.c, C on one
              libuv loop): every node its own keep-alive connection, reporting at its own phase
              of the second (spread evenly, +-100 ms jitter), latency from a report's first
              byte written to its complete answer; it prints its own CPU and how late its
              timers fired, so a reader can see it is not the limit. Then the same tool, the
              same load, against nginx answering 204 on the server's core: the reference
  ingest-history, paced-history
              ingest and paced with PULLTRACE_DATA_DIR (the history's writer thread runs on
              the server's core too): the cost of persistence
  history-size
              100,000 finished pulls of 8 layers through POST /api/v1/report (50 a report):
              the size of history.db, with the pulls' own events (the default)
  history-size-no-events
              the same with PULLTRACE_PULL_EVENTS_MAX_BYTES=0: the pulls' records alone
  history-retention
              the same 100,000 pulls, then a restart with PULLTRACE_HISTORY_MAX_BYTES at half
              the file: retention by size deletes half of them while a probe node reports a
              new pull every 100 ms; how long each probe's pull.started takes to reach the
              event stream (it waits for its record's commit) during retention and after

Every fan-out scenario prints "network_while_measured": the packets the kernel's receive
queues dropped and the TCP segments sent again while it measured (0 and 0 in a clean run).

Prints one JSON object per scenario (and writes them to bench-server.json in the build dir).
The servers' logs and data go to a temporary directory, removed at the end; with
PT_BENCH_WORK=DIR they go to DIR and stay there.
Nothing here is a test: the figures go to docs/performance.md.
"""

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
# The fan-out's first seconds, counted apart: the load starts a second after the clients
# are in, and the first passes to 10,000 sockets just connected are the slowest.
FANOUT_FIRST_S = 3
# One fan-out client in 50 is a probe (bench-sse-fanout's PROBE_EVERY): read by a thread of its
# own at real-time priority as soon as its socket has data, as a reader on its own machine.
FANOUT_PROBE_EVERY = 50
# The fan-out's reports: each pull downloads this many of its 8 layers at a time, as containerd
# does (max_concurrent_downloads, 3 by default); PT_LAYERS_AT_ONCE=0 moves all 8 in every report
# (as the ingest scenarios' reports do), the most bytes per event.
FANOUT_LAYERS_AT_ONCE = int(os.environ.get("PT_LAYERS_AT_ONCE", "3"))


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(build, work, scenario, **env):
    """pulltrace-server pinned to SERVER_CPU, its log in `work`."""
    return Server(find_binary("pulltrace-server", build), Path(work) / f"server-{scenario}.log",
                  env=dict({"PULLTRACE_LOG_LEVEL": "warn", "PULLTRACE_KUBERNETES": "off",
                            "PULLTRACE_REPORT_MIN_INTERVAL": "0"}, **env),
                  wrap=[TASKSET, "-c", SERVER_CPU]).start(timeout=10)


def run_wrk(script, url, seconds, conns, args, env=None, done=None):
    """wrk -t1 pinned to LOAD_CPU with one of the agent scripts: its WRK_JSON summary, the
    command line and the requests per second. With `done` (a function), wrk is stopped
    (SIGINT: it prints its summary) as soon as done() is true, checked twice a second:
    wrk's threads can stop early, its main thread waits out the duration."""
    env = dict(os.environ, PT_THREADS="1", **(env or {}))
    argv = ["taskset", "-c", LOAD_CPU, WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
            "--timeout", "10s", "-s", str(HERE / script), url, "--", *[str(a) for a in args]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=raise_nofile)
    if done:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < seconds:
            if done():
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.5)
    stdout, stderr = proc.communicate(timeout=seconds + 120)
    m = re.search(r"^WRK_JSON (.*)$", stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {stdout}\n{stderr}")
    res = json.loads(m.group(1))
    res["command"] = " ".join(argv[3:])
    res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    return res


def wrk(url, nodes, seconds, conns, pace_ms=0, rounds=0, prefix="bench-node", pulls=5, done=None, at_once=0):
    return run_wrk("report.lua", url, seconds, conns, [nodes, pulls, 8, pace_ms, prefix, at_once],
                   {"PT_PACE_MS": str(pace_ms), "PT_ROUNDS": str(rounds)}, done)


def run_queue_wait_seconds(pid):
    """How long the main thread of `pid` (a libuv process's loop) has waited for a CPU while
    runnable, in seconds (the kernel's schedstat): on a core shared with other processes,
    the time the loop could not answer for reasons not its own."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


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


def scenario_ingest(build, work, history=False, seconds=15):
    name = "ingest-history" if history else "ingest"
    srv = start_server(build, work, name, **(data_dir(work, name) if history else {}))
    try:
        res, cpu, cpu_s = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", 500, seconds, 16))
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


class Nginx204:
    """nginx answering 204 to every request, one worker pinned to SERVER_CPU: the reference
    beside pulltrace-server (same requests, same core)."""

    def __init__(self, work, connections=4096):
        self.port = free_port()
        d = Path(work) / f"nginx-{self.port}"
        (d / "logs").mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(f"""daemon off;
worker_processes 1;
worker_rlimit_nofile {connections + 100};
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 2m;
  client_body_buffer_size 1m;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{ return 204; }}
  }}
}}
""")
        self.proc = Proc("nginx", ["taskset", "-c", SERVER_CPU, NGINX, "-p", str(d), "-c", str(conf)],
                         d / "logs" / "stdout.log")

    def __enter__(self):
        self.proc.start()
        wait_until(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST",
                                           f"http://127.0.0.1:{self.port}/"]).returncode == 0,
                   10, what="nginx")
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        self.worker = int(kids[0])
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.proc.stop()


class NchanFanout:
    """nginx with the nchan module (Debian's libnginx-mod-nchan), one worker pinned to
    SERVER_CPU: a pub/sub server fanning messages out to EventSource subscribers, the
    reference beside pulltrace's event stream (same clients, same bytes, same core).
    publish() POSTs one message; `event` names its EventSource event."""

    MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"

    def __init__(self, work, clients):
        self.port = free_port()
        d = Path(work) / f"nchan-{self.port}"
        (d / "logs").mkdir(parents=True, exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(f"""load_module {self.MODULE};
daemon off;
worker_processes 1;
worker_rlimit_nofile {clients + 200};
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections {clients + 100}; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  client_max_body_size 16m;
  client_body_buffer_size 16m;
  server {{
    listen 127.0.0.1:{self.port};
    location = /pub {{ nchan_publisher; nchan_channel_id all; nchan_message_buffer_length 64; }}
    location = /api/v1/events {{
      nchan_subscriber eventsource; nchan_channel_id all; nchan_subscriber_first_message oldest;
    }}
  }}
}}
""")
        self.proc = Proc("nchan", ["taskset", "-c", SERVER_CPU, NGINX, "-p", str(d), "-c", str(conf)],
                         d / "logs" / "stdout.log")
        self.session = requests.Session()

    def __enter__(self):
        self.proc.start()
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", self.url + "/pub"]).returncode == 0,
                   10, what="nchan")
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        self.worker = int(kids[0])
        return self

    def publish(self, body, event=None):
        headers = {"X-EventSource-Event": event} if event else {}
        self.session.post(self.url + "/pub", data=body.encode(), headers=headers, timeout=30).raise_for_status()

    def __exit__(self, *exc):
        self.proc.stop()


def rfc3339_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def replay_passes(events):
    """pulltrace's events as recorded by a reader, grouped into the loop passes that sent
    them (the same `time`), each with its offset from the first: [(seconds, [json text])]."""
    passes = []
    for e in events:
        if e["event"] == "snapshot":
            continue
        when = e["data"]["time"]
        if not passes or passes[-1][0] != when:
            passes.append((when, []))
        passes[-1][1].append(json.dumps(e["data"], separators=(",", ":")))
    if not passes:
        return []
    t0 = parse_time(passes[0][0])
    return [(parse_time(t) - t0, texts) for t, texts in passes]


def parse_time(s):
    base, _, frac = s.rstrip("Z").partition(".")
    return time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)


def fanout_reference(build, work, clients, passes, seconds, pause_us=0):
    """The passes pulltrace sent, replayed through nchan to the same number of clients of
    the same client: each pass one message (its events' JSON, one per data: line, each
    event's time set to the moment it is published), at the offsets they had."""
    with NchanFanout(work, clients) as ref:
        ref.publish('{"snapshot":true}', event="snapshot")  # the clients' signal that they are in

        class Srv:
            port = ref.port

        def load():
            c0, t0 = cpu_seconds(ref.worker), time.monotonic()
            sent, nbytes = 0, 0
            for offset, texts in passes:
                if offset > seconds:
                    break
                delay = t0 + 1 + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                now = rfc3339_now()
                body = "\n".join(re.sub(r'"time":"[^"]*"', f'"time":"{now}"', t, count=1) for t in texts)
                ref.publish(body)
                sent += 1
                nbytes += len(body)
            c1, t1 = cpu_seconds(ref.worker), time.monotonic()
            return {"passes": sent, "bytes_per_pass": round(nbytes / max(1, sent)),
                    "worker_cpu_percent": round(100.0 * (c1 - c0) / (t1 - t0), 1)}

        res, got = with_sse_clients(build, work, Srv, clients, seconds + 3, "/api/v1/events", load, pause_us,
                                    FANOUT_FIRST_S, FANOUT_PROBE_EVERY)
        return {"delivery_delay_ms": got["delay_ms"], "delivery_delay_ms_first_seconds": got["first_seconds"],
                "probes": probe_summary(got),
                "delivered_bytes_per_sec": round(got["bytes"] / got["seconds"]),
                "clients_open_at_end": got["open_at_end"], "network_while_measured": got["network"], **res}


def scenario_nginx(build, work, seconds=15):
    with Nginx204(work) as ngx:
        res, cpu, cpu_s = cpu_during(ngx.worker, lambda: wrk(ngx.url + "/api/v1/report", 500, seconds, 16))
        # wrk's own core is the limit here (it builds every report body in Lua): the CPU
        # time nginx spends per request is the figure to compare.
        return {"scenario": "nginx-204", "requests_per_sec": res["rps"],
                "worker_cpu_percent": cpu,
                "worker_cpu_us_per_request": round(1e6 * cpu_s / max(1, res["requests"]), 1),
                "latency_us": res["latency_us"], "mean_body_bytes": res["mean_body_bytes"],
                "wrk": res["command"]}


def scenario_paced(build, work, history=False):
    name = "paced-history" if history else "paced"
    srv = start_server(build, work, name, **(data_dir(work, name) if history else {}))
    try:
        res, cpu, cpu_s = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", 500, 20, 500,
                                                          pace_ms=1000))
        m = srv.metrics()
        applied = m.value("pulltrace_agent_reports_total", {"result": "applied"})
        extra = history_figures(srv) if history else {}
        return {"scenario": name, "nodes": 500, "reports_per_sec": res["rps"],
                "latency_us": res["latency_us"], "non2xx": res["non2xx"],
                "server_cpu_percent": cpu,
                "server_cpu_us_per_report": round(1e6 * cpu_s / max(1, applied), 1),
                "loop_iterations_over": {"10ms": loop_iterations_over(m, 0.01),
                                         "100ms": loop_iterations_over(m, 0.1),
                                         "250ms": loop_iterations_over(m, 0.25)},
                "rss_kib_after": srv.rss_kib(),
                "wrk": "PT_PACE_MS=1000 " + res["command"], **extra}
    finally:
        srv.stop()


def fill_history(srv, pulls, per_report=50, nodes=100):
    """`pulls` finished pulls of 8 layers each through POST /api/v1/report, `per_report` a
    report (new ids every report, as many nodes); returns once the writer has written them
    and every pull left the tables (with PULLTRACE_HISTORY_TTL=1s: they live on in the history
    only, and a restart brings none of them back into the tables)."""
    session = requests.Session()
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
    wait_until(lambda: srv.metric("pulltrace_history_records_written_total") >= pulls
               and srv.metric("pulltrace_history_queue_depth") == 0
               and session.get(srv.url + "/api/v1/pulls", params={"limit": 1},
                               timeout=60).json()["pulls"] == [], 600, interval=1,
               what="the history writer, every pull out of the tables")


def scenario_history_size(build, work, pulls=100_000, events=True):
    """The history's size per 100,000 finished pulls (fill_history). Without `events`, the
    pulls' own events are not kept (PULLTRACE_PULL_EVENTS_MAX_BYTES=0)."""
    name = "history-size" if events else "history-size-no-events"
    d = data_dir(work, name)
    if not events:
        d["PULLTRACE_PULL_EVENTS_MAX_BYTES"] = "0"
    srv = start_server(build, work, name, PULLTRACE_HISTORY_TTL="1s",
                       PULLTRACE_MAX_BODY="4194304", **d)
    try:
        t0 = time.monotonic()
        fill_history(srv, pulls)
        wall = time.monotonic() - t0
        figures = history_figures(srv)
    finally:
        srv.stop()
    db = Path(d["PULLTRACE_DATA_DIR"]) / "history.db"
    # After a clean stop SQLite has checkpointed the WAL into the database file.
    size = db.stat().st_size
    wal = db.with_name("history.db-wal")
    return {"scenario": name, "pulls": pulls, "layers_per_pull": 8,
            "db_bytes": size, "wal_bytes_after_stop": wal.stat().st_size if wal.exists() else 0,
            "bytes_per_pull": round(size / pulls), "mib_per_100k_pulls": round(size / pulls * 1e5 / 2**20, 1),
            "generate_and_write_seconds": round(wall, 1), **figures}


def scenario_history_retention(build, work, pulls=100_000, probe_every=0.1):
    """Retention by size deleting half of a history of `pulls` pulls (fill_history, then a
    restart with PULLTRACE_HISTORY_MAX_BYTES at half the file) while a probe reports a new
    pull every `probe_every` seconds: how long each probe's pull.started took to reach the
    event stream (an event waits for its record's commit, so a long retention transaction
    would show here), during retention and after it."""
    d = data_dir(work, "history-retention")
    srv = start_server(build, work, "history-retention-fill", PULLTRACE_HISTORY_TTL="1s",
                       PULLTRACE_MAX_BODY="4194304", **d)
    try:
        fill_history(srv, pulls)
    finally:
        srv.stop()
    size = (Path(d["PULLTRACE_DATA_DIR"]) / "history.db").stat().st_size
    limit = size // 2
    srv = start_server(build, work, "history-retention", PULLTRACE_HISTORY_MAX_BYTES=str(limit),
                       PULLTRACE_HISTORY_TTL="1s", **d)
    session = requests.Session()
    stream = srv.events(path="/api/v1/events?node=probe")
    during, after = [], []
    try:
        stream.wait(lambda e: e["event"] == "snapshot")
        t0 = time.monotonic()
        done_at = None
        n = 0
        previous = []
        while done_at is None or time.monotonic() - done_at < 10:
            n += 1
            pull_id = f"probe/p{n}"
            now = time.time()
            layer = reports.layer(reports.sha256(2**40 + n), 1000, 10, started=now, updated=now)
            pull = reports.pull(pull_id, "registry.example.com/probe:1", reports.sha256(2**41 + n),
                                [layer], started=now)
            sent = time.monotonic()
            # The previous probe completes: no pull of the probe node is ever lost.
            session.post(srv.url + "/api/v1/report", timeout=60,
                         json=reports.report("probe", n, previous + [pull])).raise_for_status()
            done_layer = reports.layer(reports.sha256(2**40 + n), 1000, 1000, started=now,
                                       updated=now)
            previous = [reports.pull(pull_id, "registry.example.com/probe:1",
                                     reports.sha256(2**41 + n), [done_layer], started=now,
                                     completed=now)]
            stream.wait(lambda e: e["event"] == "pull.started" and e["data"]["pull"]["id"] == pull_id,
                        60, what=pull_id)
            (during if done_at is None else after).append(time.monotonic() - sent)
            with stream.cond:
                stream.events.clear()
            if done_at is None and n % 10 == 0:
                m = srv.metrics()
                if m.value("pulltrace_history_deleted_total", {"reason": "size"}) and \
                        m.value("pulltrace_history_database_bytes") <= limit:
                    done_at = time.monotonic()
            time.sleep(probe_every)
        m = srv.metrics()
        figures = history_figures(srv)
        deleted = m.value("pulltrace_history_deleted_total", {"reason": "size"})
    finally:
        stream.close()
        srv.stop()

    def ms(v, q):
        return round(sorted(v)[min(len(v) - 1, int(q * len(v)))] * 1000, 1)
    return {"scenario": "history-retention", "pulls": pulls, "db_bytes_before": size,
            "limit_bytes": limit, "rows_deleted": deleted,
            "retention_seconds": round(done_at - t0, 1) if done_at else None,
            "probes_during": len(during),
            "event_delay_ms_during": {"p50": ms(during, 0.5), "p99": ms(during, 0.99),
                                      "max": ms(during, 1)},
            "event_delay_ms_after": {"p50": ms(after, 0.5), "p99": ms(after, 0.99),
                                     "max": ms(after, 1)},
            **figures}


def with_sse_clients(build, work, srv, clients, seconds, path, load, pause_us=0, first_s=0, probe_every=0):
    """`clients` event-stream clients (bench-sse-fanout on LOAD_CPU) connected to srv;
    once all have their snapshot, load() runs. Returns load()'s result and the clients'
    SSE_JSON summary (the events of the first `first_s` seconds counted apart; every
    `probe_every`-th client a probe, its delays under "probes")."""
    ready = Path(work) / f"sse-ready-{srv.port}"
    sse = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(find_binary("bench-sse-fanout", build)),
                            str(srv.port), str(clients), str(seconds), str(ready), path, str(pause_us),
                            str(first_s), str(probe_every)],
                           stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
    try:
        wait_until(ready.exists, 180, what="SSE clients connected")
        c0, t0, net0 = cpu_seconds(sse.pid), time.monotonic(), network_counters()
        res = load()
        client_cpu = round(100.0 * (cpu_seconds(sse.pid) - c0) / (time.monotonic() - t0), 1)
        net1 = network_counters()
        out, _ = sse.communicate(timeout=120)
    finally:
        if sse.poll() is None:
            sse.kill()
            sse.wait()
    got = json.loads(re.search(r"^SSE_JSON (.*)$", out, re.M).group(1))
    got["client_cpu_percent"] = client_cpu  # the client's core is not the limit while well under 100
    got["network"] = {k: net1[k] - net0[k] for k in net0}
    return res, got


def network_counters():
    """The machine's packets dropped by the kernel's receive backlog queues (/proc/net/
    softnet_stat, all CPUs) and its TCP segments sent again (/proc/net/snmp RetransSegs).
    A dropped packet reaches its reader only when TCP sends it again, at least 200 ms later
    (the minimum retransmission timeout): a delay of the benchmark, not of the server, so
    the fan-out scenarios count both while they measure (0 and 0 is a clean run)."""
    drops = sum(int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines())
    tcp = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    return {"backlog_drops": drops, "tcp_retransmitted_segments": int(dict(zip(tcp[0], tcp[1]))["RetransSegs"])}


def probe_summary(got):
    """The probes' delays (bench-sse-fanout's PROBE_EVERY): how many, whether they had
    real-time priority, and their delivery delay after the first seconds and within them."""
    p = got["probes"]
    return {"clients": p["clients"], "realtime": p["realtime"], "others_idle": p["others_idle"],
            "delivery_delay_ms": p["delay_ms"],
            "delivery_delay_ms_by_type": p["delay_ms_by_type"], "delivery_delay_ms_first_seconds": p["first_seconds"]}


def histogram_between(m0, m1, name, bounds):
    """A histogram's observations between two scrapes: count, the share above each bound
    that matters here, and p50/p99 interpolated inside their bucket (as Prometheus'
    histogram_quantile does)."""
    def cum(m, le):
        return m.value(f"{name}_bucket", {"le": le}) or 0.0
    les = [f"{b:g}" for b in bounds] + ["+Inf"]
    counts = [cum(m1, le) - cum(m0, le) for le in les]
    total = counts[-1]

    def quantile(q):
        if not total:
            return None
        want, lower = q * total, 0.0
        for i, c in enumerate(counts[:-1]):
            if c >= want:
                below = counts[i - 1] if i else 0.0
                return round(1000 * (lower + (bounds[i] - lower) * (want - below) / max(c - below, 1)), 1)
            lower = bounds[i]
        return None  # in the +Inf bucket
    return {"writes": int(total), "p50_ms": quantile(0.5), "p99_ms": quantile(0.99),
            "over_100ms": round(1 - counts[les.index("0.1")] / total, 4) if total else None}


SSE_WAIT_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]


def fanout(build, work, clients, nodes, seconds=20, path="/api/v1/events", reference=False, pause_us=0):
    srv = start_server(build, work, f"fanout{clients}", PULLTRACE_MAX_CONNECTIONS=clients + 1000)
    try:
        rss0 = srv.rss_kib()
        marks = {}

        def load():
            # The server's histogram at the end of the first seconds too (the clients count
            # those apart): its wait once the first passes are over.
            first = threading.Timer(FANOUT_FIRST_S, lambda: marks.update(m_first=srv.metrics()))
            first.start()
            time.sleep(1)
            marks["rss1"] = srv.rss_kib()
            marks["m0"] = srv.metrics()
            recorder = srv.events(path=path) if reference else None
            r = cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", nodes, seconds, nodes, pace_ms=1000,
                                                at_once=FANOUT_LAYERS_AT_ONCE))
            marks["m1"] = srv.metrics()
            if recorder:
                recorder.close()
                marks["recorded"] = list(recorder.events)
            return r

        (res, cpu, _), got = with_sse_clients(build, work, srv, clients, seconds + 2, path, load, pause_us,
                                              FANOUT_FIRST_S, FANOUT_PROBE_EVERY)
        rss1, m0, m1 = marks["rss1"], marks["m0"], marks["m1"]
        published = m1.value("pulltrace_sse_events_total") - \
            m0.value("pulltrace_sse_events_total")
        wall = res["duration_us"] / 1e6
        return {"scenario": f"fanout{clients}", "clients": clients, "nodes": nodes, "client_pause_us": pause_us,
                "layers_at_once": FANOUT_LAYERS_AT_ONCE,
                "reports_per_sec": res["rps"],
                "events_published_per_sec": round(published / wall, 1),
                "events_delivered_per_sec": got["events_per_sec"],
                "delivered_bytes_per_sec": round(got["bytes"] / got["seconds"]),
                "delivery_delay_ms": got["delay_ms"], "delivery_delay_ms_by_type": got["delay_ms_by_type"],
                "delivery_delay_ms_first_seconds": got["first_seconds"],
                "probes": probe_summary(got),
                "server_write_wait": histogram_between(m0, m1, "pulltrace_sse_write_wait_seconds", SSE_WAIT_BOUNDS),
                "server_write_wait_after_first_seconds": histogram_between(
                    marks["m_first"], m1, "pulltrace_sse_write_wait_seconds", SSE_WAIT_BOUNDS),
                "clients_dropped": m1.value("pulltrace_sse_clients_dropped_total"),
                "clients_closed_seen_by_client": got["closed_by_server"],
                "server_cpu_percent": cpu, "report_latency_us": res["latency_us"],
                "rss_kib_no_clients": rss0, "rss_kib_with_clients": rss1,
                "rss_kib_per_client": round((rss1 - rss0) / clients, 1),
                "rss_kib_after": srv.rss_kib(),
                "clients_with_snapshot": got["with_snapshot"], "clients_open_at_end": got["open_at_end"],
                "client_cpu_percent": got["client_cpu_percent"], "network_while_measured": got["network"],
                "command": f"bench-sse-fanout PORT {clients} {seconds + 2} READY {path} {pause_us} {FANOUT_FIRST_S} "
                           f"{FANOUT_PROBE_EVERY} + "
                           f"PT_PACE_MS=1000 {res['command']}",
                **({"nchan_same_passes": fanout_reference(build, work, clients, replay_passes(marks["recorded"]),
                                                          seconds, pause_us)} if reference else {})}
    finally:
        srv.stop()


class LoopbackReceiveOnLoadCore:
    """On loopback, the kernel runs the receiving side's TCP (and the reader's wake-up) on the
    sending core: with 10,000 readers, the server's core would pay for 10,000 receivers' network
    stacks, which over a network run on the readers' own machines. This steers loopback's
    receive processing to LOAD_CPU with receive packet steering (RPS: /sys/class/net/lo/queues/
    rx-0/rps_cpus, root only), as a network card hands it to the other machine, and restores
    the old mask afterwards. The sending side (the server's writes, TCP, the loopback device)
    stays on the server's core. LOAD_CPU's backlog queue (net.core.netdev_max_backlog, 1,000
    packets by default) is raised to at least 65,536 meanwhile: a pass hands it 10,000 packets
    faster than its core takes them, and what it drops costs a reader a TCP retransmission
    (network_counters), where a reader machine's network card holds its own packets only.
    `mask` and `backlog` are the values set."""
    PATH = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
    BACKLOG_PATH = Path("/proc/sys/net/core/netdev_max_backlog")

    def __enter__(self):
        self.old = self.PATH.read_text().strip()
        self.old_backlog = self.BACKLOG_PATH.read_text().strip()
        self.mask = format(1 << int(LOAD_CPU), "x")
        self.backlog = max(65536, int(self.old_backlog))
        self.BACKLOG_PATH.write_text(str(self.backlog))
        self.PATH.write_text(self.mask)
        return self

    def __exit__(self, *exc):
        self.PATH.write_text(self.old)
        self.BACKLOG_PATH.write_text(self.old_backlog)


def coalesced(res):
    res["scenario"] += "-coalesced"
    return res


def fanout_remote_rx(build, work, clients, nodes, **kw):
    with LoopbackReceiveOnLoadCore() as steering:
        res = fanout(build, work, clients, nodes, **kw)
    res["scenario"] += "-remote-rx"
    res["loopback_rps_cpus"] = steering.mask
    res["netdev_max_backlog"] = steering.backlog
    return res


def loop_iterations_over(m, seconds):
    """Loop iterations longer than `seconds` (a bucket bound) in a metrics scrape."""
    total = m.value("pulltrace_loop_iteration_seconds_count") or 0
    upto = m.value("pulltrace_loop_iteration_seconds_bucket", {"le": f"{seconds:g}"}) or 0
    return total - upto


def run_rollout(build, port, nodes, seconds, layers, image):
    """bench-rollout (bench/server/rollout_load.c) pinned to LOAD_CPU: NODES agents on their
    own connections, each reporting once a second at its own phase; its ROLLOUT_JSON summary
    and the command line."""
    argv = ["taskset", "-c", LOAD_CPU, str(find_binary("bench-rollout", build)), str(port), str(nodes),
            str(seconds), str(layers), "45", "rollout-node", image]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300, preexec_fn=raise_nofile)
    m = re.search(r"^ROLLOUT_JSON (.*)$", proc.stdout, re.M)
    if not m:
        raise RuntimeError(f"bench-rollout failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    res = json.loads(m.group(1))
    res["command"] = "bench-rollout PORT " + " ".join(argv[5:])
    return res


def rollout_load_figures(res):
    """What the rollout's load tool measured, as the scenario reports it."""
    return {"reports": res["answered"], "reports_per_sec": res["reports_per_sec"], "status": res["status"],
            "errors": res["errors"], "late_sends": res["late_sends"], "skipped": res["skipped"],
            "latency_us": res["latency_us"], "tool_cpu_percent": res["tool_cpu_percent"],
            "tool_cpu_us_per_report": res["tool_cpu_us_per_report"],
            "tool_run_queue_wait_percent": res["tool_run_queue_wait_percent"],
            "tool_timer_lag_ms": res["tool_timer_lag_ms"]}


def scenario_rollout(build, work, nodes=5000, seconds=70, layers=8):
    """NODES agents each reporting one pull of one image (LAYERS layers, moving) once a
    second, each on its own connection at its own phase of the second (bench-rollout), with
    the default rate limit; the server's CPU, the report latency, rejections, and the pulls
    seen through the API and the event stream. Then the same load from the same tool against
    nginx answering 204 on the same core: the latency the machine itself gives at that moment."""
    image = "registry.example.com/platform/node-agent:v2"
    srv = start_server(build, work, "rollout", PULLTRACE_REPORT_MIN_INTERVAL="100ms",
                       PULLTRACE_MAX_CONNECTIONS=str(nodes + 1000))
    try:
        summaries = srv.events(path="/api/v1/events?types=rollout.summary")
        one_node = srv.events(path="/api/v1/events?node=rollout-node-00001&types=pull.*")
        m0 = srv.metrics()
        c0, w0, t0 = cpu_seconds(srv.pid), run_queue_wait_seconds(srv.pid), time.monotonic()
        res = run_rollout(build, srv.port, nodes, seconds, layers, image)
        c1, w1, t1 = cpu_seconds(srv.pid), run_queue_wait_seconds(srv.pid), time.monotonic()
        m = srv.metrics()
        time.sleep(1.5)  # the last summary
        rollout = [e["data"]["rollout"] for e in summaries.events if e["event"] == "rollout.summary"
                   and e["data"]["rollout"]["image"] == image]
        node_events = [e["event"] for e in one_node.events if e["event"] != "snapshot"]
        summaries.close()
        one_node.close()
        visible = srv.pulls(image=image)
        rejected = {r: m.value("pulltrace_agent_reports_rejected_total", {"reason": r}) or 0
                    for r in ("throttled", "invalid", "too_many_nodes", "out_of_memory")}
        ours = {"scenario": "rollout", "nodes": nodes, "layers": layers, "seconds": seconds,
                **rollout_load_figures(res), "rejected": rejected, "mean_body_bytes": res["mean_body_bytes"],
                # The tool connects its nodes before the reports start: the server's CPU is
                # taken over the whole run of the tool, so it includes those connections.
                "server_cpu_percent": round(100.0 * (c1 - c0) / (t1 - t0), 1),
                "server_run_queue_wait_percent": round(100.0 * (w1 - w0) / (t1 - t0), 1),
                "events_per_sec": round((m.value("pulltrace_sse_events_total") -
                                         m0.value("pulltrace_sse_events_total")) / (t1 - t0), 1),
                "loop_iterations_over_10ms": loop_iterations_over(m, 0.01) - loop_iterations_over(m0, 0.01),
                "loop_iteration_max_cpu_ms": round(1000 * m.value("pulltrace_loop_iteration_max_seconds"), 1),
                "loop_iteration_max_wall_ms": round(1000 * m.value("pulltrace_loop_iteration_wall_max_seconds"), 1),
                "pulls_visible_in_api": len(visible), "summaries_received": len(rollout),
                "last_summary": rollout[-1] if rollout else None,
                "events_of_one_node": len(node_events), "rss_kib_after": srv.rss_kib(),
                "command": res["command"]}
    finally:
        srv.stop()
    ref_seconds = seconds
    # Twice the connections it holds: nginx closes idle keep-alive connections whenever
    # fewer than 1/16 of its worker_connections are free (each then reconnects, which
    # frees none), so NODES + 100 made it close half of them after an answer.
    with Nginx204(work, connections=2 * nodes) as ngx:
        c0, w0, t0 = cpu_seconds(ngx.worker), run_queue_wait_seconds(ngx.worker), time.monotonic()
        ref = run_rollout(build, ngx.port, nodes, ref_seconds, layers, image)
        c1, w1, t1 = cpu_seconds(ngx.worker), run_queue_wait_seconds(ngx.worker), time.monotonic()
    ours["nginx_204_same_load"] = {"seconds": ref_seconds, **rollout_load_figures(ref),
                                   "worker_cpu_percent": round(100.0 * (c1 - c0) / (t1 - t0), 1),
                                   "worker_run_queue_wait_percent": round(100.0 * (w1 - w0) / (t1 - t0), 1)}
    return ours


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


def scenario_ingest_reader(build, work, seconds=15, clients=1):
    """ingest with event-stream clients connected to the full stream (bench-sse-fanout):
    every event is written, framed and sent, as when a UI is open."""
    srv = start_server(build, work, "ingest-reader")
    try:
        (res, cpu, cpu_s), got = with_sse_clients(
            build, work, srv, clients, seconds + 3, "/api/v1/events",
            lambda: cpu_during(srv.pid, lambda: wrk(srv.url + "/api/v1/report", 500, seconds, 16)))
        m = srv.metrics()
        applied = m.value("pulltrace_agent_reports_total", {"result": "applied"})
        return {"scenario": "ingest-reader", "clients": clients, "reports_per_sec": res["rps"],
                "server_cpu_percent": cpu, "server_cpu_us_per_report": round(1e6 * cpu_s / max(1, applied), 1),
                "events_received_per_client": got["events"] / max(1, clients),
                "delivery_delay_ms": got["delay_ms"], "latency_us": res["latency_us"], "wrk": res["command"]}
    finally:
        srv.stop()


def scenario_saturation(build, work, rounds=4, seconds=10):
    """ingest and nginx in turn, `rounds` times: the machine's other load changes
    over minutes, so each pulltrace figure is set beside the nginx figure taken
    right after it, and the ratios are reported per pair."""
    pairs = []
    for _ in range(rounds):
        ing = scenario_ingest(build, work, seconds=seconds)
        ngx = scenario_nginx(build, work, seconds)
        pairs.append({"pulltrace_us_per_report": ing["server_cpu_us_per_report"],
                      "nginx_us_per_request": ngx["worker_cpu_us_per_request"],
                      "ratio": round(ing["server_cpu_us_per_report"] /
                                     max(0.1, ngx["worker_cpu_us_per_request"]), 2),
                      "pulltrace_reports_per_sec": ing["reports_per_sec"],
                      "pulltrace_server_cpu_percent": ing["server_cpu_percent"],
                      "pulltrace_latency_us": ing["latency_us"],
                      "events_per_report": round(ing["events_published"] / max(1, ing["applied"]), 2),
                      "non2xx": ing["non2xx"]})
    ratios = [p["ratio"] for p in pairs]
    return {"scenario": "saturation", "rounds": rounds, "seconds": seconds, "pairs": pairs,
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_median": sorted(ratios)[len(ratios) // 2],
            "wrk": f"wrk -t1 -c16 -d{seconds}s ... report.lua URL -- 500 5 8 0 bench-node"}


def scenario_tables(build, work, nodes=5000, pulls=20):
    """NODES x PULLS pulls of 8 layers in the tables (100,000 by default, one report of
    each node: bench/server/report.lua with PT_ROUNDS=1): the server's resident memory per
    pull; then a client pages through GET /api/v1/pulls (limit=1000) and
    /api/v1/nodes while the tick walks the tables: loop iterations over 10 ms meanwhile.
    The nodes report once: a node-lost grace of an hour keeps them from being lost (and
    100,000 pulls from failing at once) while the scenario runs."""
    srv = start_server(build, work, "tables", PULLTRACE_NODE_LOST_GRACE="1h")
    try:
        rss0 = srv.rss_kib()
        res = wrk(srv.url + "/api/v1/report", nodes, 600, 8, rounds=1, prefix="tbl-node",
                  pulls=pulls, done=lambda: (srv.metrics().value("pulltrace_agent_reports_total",
                                                                {"result": "applied"}) or 0) >= nodes)
        m = srv.metrics()
        tracked = sum(m.value("pulltrace_pulls_tracked", {"state": s}) or 0
                      for s in ("pulling", "stalled", "completed", "failed", "lost"))
        time.sleep(2)  # a tick or two over the full tables
        rss1 = srv.rss_kib()
        m0 = srv.metrics()
        t0 = time.monotonic()
        pages, items, size, token, slowest = 0, 0, 0, None, 0.0
        while True:
            params = {"limit": 1000, **({"continue": token} if token else {})}
            s0 = time.monotonic()
            r = requests.get(srv.url + "/api/v1/pulls", params=params, timeout=60)
            slowest = max(slowest, time.monotonic() - s0)
            doc = r.json()
            pages += 1
            items += len(doc["pulls"])
            size += len(r.content)
            token = doc["metadata"].get("continue")
            if not token:
                break
        paging_s = time.monotonic() - t0
        m_pulls = srv.metrics()
        nodes_seen = len(srv.list_all("nodes", limit=1000))
        m_nodes = srv.metrics()
        default = requests.get(srv.url + "/api/v1/pulls", timeout=60)
        m1 = srv.metrics()
        return {"scenario": "tables", "pulls_tracked": tracked, "layers_per_pull": 8,
                "rss_kib_empty": rss0, "rss_kib_full": rss1,
                "kib_per_pull": round((rss1 - rss0) / max(1, tracked), 2),
                "rss_mib_full": round(rss1 / 1024, 1),
                "pages": pages, "pulls_paged": items, "paged_bytes": size,
                "paging_seconds": round(paging_s, 2), "slowest_page_ms": round(1000 * slowest, 1),
                "nodes_paged": nodes_seen,
                "default_page_pulls": len(default.json()["pulls"]), "default_page_bytes": len(default.content),
                "loop_iterations_while_paging": (m1.value("pulltrace_loop_iteration_seconds_count") or 0) -
                                                (m0.value("pulltrace_loop_iteration_seconds_count") or 0),
                "loop_iterations_over_10ms_while_paging": loop_iterations_over(m1, 0.01) -
                                                          loop_iterations_over(m0, 0.01),
                "of_which_pulls_pages": loop_iterations_over(m_pulls, 0.01) - loop_iterations_over(m0, 0.01),
                "of_which_nodes_pages": loop_iterations_over(m_nodes, 0.01) - loop_iterations_over(m_pulls, 0.01),
                "loop_iteration_max_cpu_ms": round(1000 * m1.value("pulltrace_loop_iteration_max_seconds"), 1),
                "loop_iteration_max_wall_ms": round(1000 * m1.value("pulltrace_loop_iteration_wall_max_seconds"), 1),
                "wrk": "PT_ROUNDS=1 " + res["command"]}
    finally:
        srv.stop()


SCENARIOS = {
    "tables": scenario_tables,
    "saturation": scenario_saturation,
    "ingest": scenario_ingest,
    "ingest-reader": scenario_ingest_reader,
    "nginx": scenario_nginx,
    "paced": scenario_paced,
    "fanout100": lambda b, w: fanout(b, w, 100, 20),
    "fanout1000": lambda b, w: fanout(b, w, 1000, 2),
    "fanout10000": lambda b, w: fanout(b, w, 10000, 2, reference=True),
    "fanout10000-summaries": lambda b, w: fanout(b, w, 10000, 2, path="/api/v1/events?types=rollout.summary"),
    "fanout10000-remote-rx": lambda b, w: fanout_remote_rx(b, w, 10000, 2, reference=True),
    "fanout10000-coalesced": lambda b, w: coalesced(fanout(b, w, 10000, 2, reference=True, pause_us=1000)),
    "memory": scenario_memory,
    "rollout": scenario_rollout,
    "ingest-history": lambda b, w: scenario_ingest(b, w, history=True),
    "paced-history": lambda b, w: scenario_paced(b, w, history=True),
    "history-size": scenario_history_size,
    "history-size-no-events": lambda b, w: scenario_history_size(b, w, events=False),
    "history-retention": scenario_history_retention,
}


def main():
    args = sys.argv[1:]
    build = Path(args.pop(0) if args and not args[0] in SCENARIOS else ROOT / "build").resolve()
    names = args or list(SCENARIOS)
    results = []
    keep = os.environ.get("PT_BENCH_WORK")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="pt-bench-server-")) as work:
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
