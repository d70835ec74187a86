"""The web UI in Debian's Chromium (driven by playwright-core, ui/e2e/browser.mjs) against a
real pulltrace-server fed by the real agent tracking a real, throttled CRI pull.

The browser script checks, in order: the pull appears and its bar moves; filters hide it
and land in the URL; its layers show with short digests; the phone layout (dark) does not
scroll sideways; a server restart shows "reconnecting" and then live data again; a failed
pull shows its error message. This test reacts to the phases the script prints (restarts
the server, stops the agent). Screenshots go to <build>/ui-screenshots/ on every run.

Kubelet-reported failures (ErrImagePull with kubelet's message) need the Kubernetes watcher;
here the failure is the server's own: the agent stops, the node is lost and so is its
in-flight pull (`pull.failed`, reason node-lost). The UI renders both the same way, and
ui/test/state.test.ts covers the kubelet case."""
# ctest: TIMEOUT=600

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from harness import reports

KIB = 1024
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "ui"
SCRIPT = UI_DIR / "e2e" / "browser.mjs"
CHROMIUM = os.environ.get("PT_CHROMIUM", "/usr/bin/chromium")


def need(cond, why):
    if not cond:
        pytest.fail(why)


def need_browser():
    """The path of node, once node, playwright-core and Chromium are known to be there."""
    node = shutil.which("node")
    need(node, "node is not installed")
    need((UI_DIR / "node_modules" / "playwright-core").is_dir(),
         "ui/node_modules is missing: build the `ui` target first (it runs npm ci)")
    need(Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium")
    return node


def browse(node, script, cfg, on_phase=None, timeout=300):
    """Runs a browser script; returns its phases (calling on_phase for each as it comes)."""
    proc = subprocess.Popen([node, str(UI_DIR / "e2e" / script), json.dumps(cfg)], cwd=UI_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    msgs, errors = [], []
    try:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                errors.append(line.rstrip())
                continue
            print("browser:", json.dumps(msg))
            if "error" in msg:
                errors.append(msg["error"])
                continue
            msgs.append(msg)
            if on_phase:
                on_phase(msg)
        rc = proc.wait(timeout=30)
        stderr = proc.stderr.read()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0 and not errors, f"browser test failed: {errors}\n{stderr[-4000:]}"
    return msgs


def start_server(stack):
    return stack.server(env={"PULLTRACE_NODE_LOST_GRACE": "3s"})


@pytest.mark.stack(rate=96 * KIB)
def test_ui_in_chromium(stack, server_binary, cri_available, build_dir):
    node = need_browser()

    server = start_server(stack)
    url = server.url + "/"
    index = requests.get(url, timeout=5)
    need(index.status_code == 200 and '<div id="root">' in index.text,
         "pulltrace-server does not serve the built UI (configured with PT_BUILD_UI=OFF?)")

    agent = stack.agent(server, node_name="ui-node", env={
        "PULLTRACE_REPORT_INTERVAL": "500ms", "PULLTRACE_STALL_THRESHOLD": "15s"})
    # Two layers of 4 MiB at 96 KiB/s per connection: about 40 s in flight, longer than
    # the browser script needs to reach its last phase.
    img = stack.images.image("e2e/ui-app", "v1", layers=[4 * MIB, 4 * MIB])
    stack.cri_pull(img, background=True)  # stopped by stack.close()

    shots = Path(build_dir) / "ui-screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    cfg = {"url": url, "image": img.name, "layers": img.manifest.layer_digests,
           "shots": str(shots), "chromium": CHROMIUM}
    def on_phase(msg):
        if msg["phase"] == "restart-server":
            server.stop()
            time.sleep(1.5)  # long enough for the page to notice
            server.start()  # on the same addresses
        elif msg["phase"] == "stop-agent":
            agent.stop()
    phases = [m["phase"] for m in browse(node, SCRIPT.name, cfg, on_phase)]
    print(f"screenshots in {shots}: {sorted(p.name for p in shots.glob('*.png'))}")
    assert phases == ["live", "pull-visible", "bar-moved", "filters", "layers", "phone",
                      "restart-server", "reconnecting", "live-again", "stop-agent", "failed",
                      "done"]
    for name in ("main-1280x800.png", "details-1280x800.png", "main-phone-dark.png",
                 "details-phone-dark.png", "reconnecting-1280x800.png",
                 "failed-details-1280x800.png"):
        assert (shots / name).stat().st_size > 0, name


# ---- many pulls ----------------------------------------------------------------------

class FakeAgents:
    """Agent-shaped reports for many nodes posted to the real server: each node first
    reports `per_node` pulls of which `active` are in flight, then keeps reporting only
    those, a bit further each second (completed pulls left the report and stay completed
    on the server)."""

    def __init__(self, server, nodes, per_node, active):
        self.server, self.nodes, self.per_node, self.active = server, nodes, per_node, active
        self.seq = {}
        self.start = time.time() - 60
        self.stop_event = threading.Event()
        self.thread = None
        self.errors = []

    def pull(self, node, i, now, tick):
        digest = reports.sha256(node * 1000 + i)
        layer_total = 4 * MIB
        active = i < self.active
        done = min(layer_total, (tick * 64 + i * 37) * KIB % layer_total) if active else layer_total
        started = self.start + i
        return reports.pull(
            f"{digest[7:23]}-{int(started)}", f"127.0.0.1/scale/app-{i % 25}", digest,
            started=started, completed=None if active else started + 20, layers=[
                reports.layer(reports.sha256(node * 1000 + i + 500000), layer_total, done,
                              state="downloading" if active else "done",
                              media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                              started=started, updated=now)])

    def post(self, node, tick, first):
        now = time.time()
        name = f"scale-node-{node:02d}"
        self.seq[name] = self.seq.get(name, 0) + 1
        count = self.per_node if first else self.active
        body = reports.report(name, self.seq[name], boot="scale-boot", agent_version="scale",
                              timestamp=now,
                              pulls=[self.pull(node, i, now, tick) for i in range(count)])
        r = self.server.post(body, timeout=10)
        if r.status_code != 200:
            self.errors.append(f"{r.status_code} {r.text}")

    def seed(self):
        for n in range(self.nodes):
            self.post(n, 0, first=True)

    def run(self):
        tick = 1
        while not self.stop_event.wait(1.0):
            for n in range(self.nodes):
                self.post(n, tick, first=False)
            tick += 1

    def __enter__(self):
        self.seed()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=15)


@pytest.mark.stack(containerd=False, nginx=False)
def test_ui_thousands_of_pulls(stack, server_binary, build_dir):
    node = need_browser()
    server = start_server(stack)
    url = server.url
    nodes, per_node, active = 50, 60, 6
    with FakeAgents(server, nodes, per_node, active) as agents:
        pulls = server.pulls()
        assert len(pulls) == nodes * per_node
        shots = Path(build_dir) / "ui-screenshots"
        cfg = {"url": url + "/", "total": nodes * per_node, "nodes": nodes,
               "filterNode": "scale-node-07", "shots": str(shots), "chromium": CHROMIUM}
        res = subprocess.run([node, str(UI_DIR / "e2e" / "scale.mjs"), json.dumps(cfg)],
                             cwd=UI_DIR, capture_output=True, text=True, timeout=180)
    msgs = [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]
    for m in msgs:
        print("browser:", json.dumps(m))
    assert not agents.errors, agents.errors[:3]
    assert res.returncode == 0, f"{[m for m in msgs if 'error' in m]}\n{res.stderr[-3000:]}"
    assert [m["phase"] for m in msgs if "phase" in m] == ["loaded", "frames", "filtered", "done"]
    frames = next(m for m in msgs if m.get("phase") == "frames")
    # Smoothness on a shared 2-core CI machine with software rendering: generous bounds,
    # still far from what an unvirtualised, unbatched list of 3000 rows does.
    assert frames["fps"] >= 10, frames
    assert frames["p95"] <= 250, frames
