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

from harness import free_port

KIB = 1024
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "ui"
SCRIPT = UI_DIR / "e2e" / "browser.mjs"
CHROMIUM = os.environ.get("PT_CHROMIUM", "/usr/bin/chromium")


def need(cond, why):
    if not cond:
        pytest.fail(why)


def start_server(stack, port, mport):
    env = {
        "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{port}",
        "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{mport}",
        "PULLTRACE_LOG_LEVEL": "debug",
        "PULLTRACE_NODE_LOST_GRACE": "3s",
    }

    def ready():
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return stack.daemon("pulltrace-server", env=env, ready=ready, timeout=15)


@pytest.mark.stack(rate=96 * KIB)
def test_ui_in_chromium(stack, server_binary, cri_available, build_dir):
    node = shutil.which("node")
    need(node, "node is not installed")
    need((UI_DIR / "node_modules" / "playwright-core").is_dir(),
         "ui/node_modules is missing: build the `ui` target first (it runs npm ci)")
    need(Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium")

    port, mport = free_port(), free_port()
    server = start_server(stack, port, mport)
    url = f"http://127.0.0.1:{port}/"
    index = requests.get(url, timeout=5)
    need(index.status_code == 200 and '<div id="root">' in index.text,
         "pulltrace-server does not serve the built UI (configured with PT_BUILD_UI=OFF?)")

    agent = stack.agent(f"http://127.0.0.1:{port}", node_name="ui-node", env={
        "PULLTRACE_REPORT_INTERVAL": "500ms", "PULLTRACE_STALL_THRESHOLD": "15s"})
    # Two layers of 4 MiB at 96 KiB/s per connection: about 40 s in flight, longer than
    # the browser script needs to reach its last phase.
    img = stack.images.image("e2e/ui-app", "v1", layers=[4 * MIB, 4 * MIB])
    stack.cri_pull(img, background=True)  # stopped by stack.close()

    shots = Path(build_dir) / "ui-screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    cfg = {"url": url, "image": img.name, "layers": img.manifest.layer_digests,
           "shots": str(shots), "chromium": CHROMIUM}
    proc = subprocess.Popen([node, str(SCRIPT), json.dumps(cfg)], cwd=UI_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    phases, errors = [], []
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
            phases.append(msg["phase"])
            if msg["phase"] == "restart-server":
                server.stop()
                time.sleep(1.5)  # long enough for the page to notice
                server = start_server(stack, port, mport)
            elif msg["phase"] == "stop-agent":
                agent.stop()
        rc = proc.wait(timeout=30)
        stderr = proc.stderr.read()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"screenshots in {shots}: {sorted(p.name for p in shots.glob('*.png'))}")
    assert rc == 0 and not errors, f"browser test failed: {errors}\n{stderr[-4000:]}"
    assert phases == ["live", "pull-visible", "bar-moved", "filters", "layers", "phone",
                      "restart-server", "reconnecting", "live-again", "stop-agent", "failed",
                      "done"]
    for name in ("main-1280x800.png", "details-1280x800.png", "main-phone-dark.png",
                 "details-phone-dark.png", "reconnecting-1280x800.png",
                 "failed-details-1280x800.png"):
        assert (shots / name).stat().st_size > 0, name
