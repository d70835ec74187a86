#!/usr/bin/python3
"""N event-stream clients in one process (non-blocking sockets, one selector).

Usage: sse_clients.py PORT N SECONDS [READY_FILE]

Connects N clients to GET /api/v1/events on 127.0.0.1:PORT, writes READY_FILE once all
of them have their response headers, then reads for SECONDS and prints one JSON line:
events received (all clients together) and per second, the delivery delay (client receive
time minus the event's `time`, sampled on the last event of every read; same machine clock,
millisecond resolution), clients closed by the server, and bytes read.
"""

import json
import resource
import selectors
import socket
import sys
import time
from datetime import datetime

MARK = b"\nevent: "   # every event has an `id:` line before its `event:` line
TIME = b'"time":"'


def parse_time(b):
    s = b.decode()
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    ready_file = sys.argv[4] if len(sys.argv) > 4 else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 64)), hard))
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        s.setblocking(False)
        st = {"head": b"", "headers": False, "tail": b"", "events": 0, "bytes": 0, "closed": False}
        state[s] = st
        sel.register(s, selectors.EVENT_READ)
    pending = n
    delays = []
    t_start = None
    deadline = None
    while True:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            st = state[s]
            try:
                data = s.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                st["closed"] = True
                sel.unregister(s)
                s.close()
                if not st["headers"]:
                    pending -= 1
                continue
            if not st["headers"]:
                st["head"] += data
                if b"\r\n\r\n" not in st["head"]:
                    continue
                st["headers"] = True
                data = st["head"].split(b"\r\n\r\n", 1)[1]
                pending -= 1
            if t_start is not None:
                buf = st["tail"] + data
                st["events"] += buf.count(MARK)
                st["bytes"] += len(data)
                i = data.rfind(TIME)
                if i >= 0 and len(data) >= i + 32:
                    try:
                        delays.append(time.time() - parse_time(data[i + 8:i + 32]))
                    except ValueError:
                        pass
                st["tail"] = buf[-(len(MARK) - 1):]
        if pending == 0 and t_start is None:
            t_start = time.monotonic()
            deadline = t_start + seconds
            if ready_file:
                with open(ready_file, "w") as f:
                    f.write("ready\n")
    elapsed = time.monotonic() - t_start if t_start else 0
    total = sum(st["events"] for st in state.values())
    out = {
        "clients": n,
        "seconds": round(elapsed, 2),
        "events": total,
        "events_per_sec": round(total / elapsed, 1) if elapsed else 0,
        "events_per_client_min": min(st["events"] for st in state.values()),
        "events_per_client_max": max(st["events"] for st in state.values()),
        "bytes": sum(st["bytes"] for st in state.values()),
        "closed_by_server": sum(1 for st in state.values() if st["closed"]),
        "delay_samples": len(delays),
        "delay_ms": {k: (round(percentile(delays, p) * 1000, 1) if delays else None)
                     for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
    }
    print("SSE_JSON " + json.dumps(out), flush=True)
    for s in list(state):
        if not state[s]["closed"]:
            s.close()


if __name__ == "__main__":
    main()
