#!/usr/bin/python3
"""Agent cost while ~50 ingests are active on a real containerd.

Starts the e2e stack (containerd, registry, nginx throttled to RATE per connection), pushes
IMAGES images of LAYERS layers, pulls them all at once through CRI so that about
IMAGES x 3 ingests are active (containerd's CRI fetches three layers of a pull at a time),
runs pulltrace-agent with a 1 s interval and measures, over WINDOW seconds:
  - the agent's CPU time per poll (utime+stime from /proc, divided by reports sent),
  - its resident memory (VmRSS, and the peak VmHWM),
and, beside it, one bare ListStatuses call from a minimal client (bench-liststatuses).

Usage: /usr/bin/python3 bench/agent/bench_agent.py [BUILD_DIR]   (prints JSON)
"""

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "spec" / "e2e"))

from harness import Stack, cpu_seconds, wait_until  # noqa: E402

IMAGES, LAYERS, LAYER_BYTES, RATE, WINDOW = 17, 3, 2 << 20, 16 << 10, 20.0


def proc_mem(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def main():
    build = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build").resolve()
    with Stack(build=build, rate=RATE) as stack:
        imgs = [stack.images.image(f"bench/img{i}", "v1", layers=[LAYER_BYTES] * LAYERS)
                for i in range(IMAGES)]
        receiver = stack.receiver()
        agent = stack.agent(receiver, env={"PULLTRACE_REPORT_INTERVAL": "1s",
                                           "PULLTRACE_LOG_LEVEL": "warn"})
        for img in imgs:
            stack.cri_pull(img, background=True, timeout=600)
        wait_until(lambda: len(stack.containerd.active_ingests()) >= IMAGES * LAYERS - 3,
                   60, interval=0.5, what="ingests active")
        time.sleep(2)
        ingests_before = len(stack.containerd.active_ingests())
        n0, c0 = len(receiver.reports), cpu_seconds(agent.pid)
        time.sleep(WINDOW)
        n1, c1 = len(receiver.reports), cpu_seconds(agent.pid)
        mem = proc_mem(agent.pid)
        ingests_after = len(stack.containerd.active_ingests())
        last = receiver.reports[-1]
        bare = subprocess.run([str(build / "bench" / "bench-liststatuses"),
                               str(stack.containerd.socket), "200"],
                              capture_output=True, text=True, check=True)
        result = {
            "ingests_active": [ingests_before, ingests_after],
            "pulls_in_report": len(last["pulls"]),
            "layers_in_report": sum(len(p["layers"]) for p in last["pulls"]),
            "polls": n1 - n0,
            "agent_cpu_ms_per_poll": round((c1 - c0) * 1000 / max(1, n1 - n0), 3),
            "agent_rss_kib": mem.get("VmRSS"),
            "agent_peak_rss_kib": mem.get("VmHWM"),
            "bare_liststatuses": json.loads(bare.stdout),
        }
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
