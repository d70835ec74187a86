"""The web UI's sign-in (PULLTRACE_READ_AUTH=kubernetes, docs/security.md) in Debian's Chromium,
driven by playwright-core (ui/e2e/signin.mjs), against a real pulltrace-server that checks
tokens with TokenReviews and SubjectAccessReviews of the fake Kubernetes API server: without a
token the page explains how to get one, a token whose user may not read says so, a reader's
token shows the pulls, live through the event stream. Screenshots go to
<build>/ui-screenshots/."""
# ctest: TIMEOUT=300

import json
import subprocess
from pathlib import Path

import requests

from harness import reports
from test_ui import CHROMIUM, UI_DIR, need, need_browser

NODE = "ui-node"


def test_ui_sign_in(stack, kube, server_binary, build_dir):
    node = need_browser()
    kube.allow("create", "authentication.k8s.io", "tokenreviews", user="e2e-user")
    kube.allow("create", "authorization.k8s.io", "subjectaccessreviews", user="e2e-user")
    kube.add_token("alice-token", "alice")
    kube.add_token("bob-token", "bob")
    kube.allow("get", "pulltrace.io", "pulls", user="alice")
    server = stack.server(token="agent-s3cret", env={
        "PULLTRACE_KUBECONFIG": str(kube.write_kubeconfig()), "PULLTRACE_READ_AUTH": "kubernetes",
        "PULLTRACE_SSE_HEARTBEAT": "500ms"}).wait_kube_ready(20)
    url = server.url + "/"
    index = requests.get(url, timeout=5)
    need(index.status_code == 200 and '<div id="root">' in index.text,
         "pulltrace-server does not serve the built UI (configured with PT_BUILD_UI=OFF?)")
    pull = reports.pull("p1", "127.0.0.1/e2e/signin-app", reports.sha256(1),
                        [reports.layer(reports.sha256(2), 1000, 400)], started=None)
    assert server.post(reports.report(NODE, 1, [pull])).status_code == 200

    shots = Path(build_dir) / "ui-screenshots"
    cfg = {"url": url, "image": "e2e/signin-app", "token": "alice-token",
           "deniedToken": "bob-token", "shots": str(shots), "chromium": CHROMIUM}
    res = subprocess.run([node, str(UI_DIR / "e2e" / "signin.mjs"), json.dumps(cfg)],
                         cwd=UI_DIR, capture_output=True, text=True, timeout=180)
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert res.returncode == 0, (lines, res.stderr[-3000:])
    assert [x["phase"] for x in lines if "phase" in x] == ["asked-to-sign-in", "denied", "signed-in"]
    refused = server.metric("pulltrace_read_requests_refused_total", {"reason": "unauthenticated"})
    assert refused >= 1
    assert server.metric("pulltrace_read_requests_refused_total", {"reason": "forbidden"}) >= 1
