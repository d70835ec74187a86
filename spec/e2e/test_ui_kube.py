"""The web UI with Kubernetes data, in Debian's Chromium (ui/e2e/kube.mjs): the real server
watching the fake Kubernetes API (harness/kubeapi.py), the real agent and containerd. A pull
served by a pod shows its tag and pod, and namespace/pod filters go through pods (and into
the URL); a pull kubelet reported as failed shows kubelet's message and its pod."""
# ctest: TIMEOUT=600

import json
import subprocess
import time
from pathlib import Path

import pytest

from harness import wait_until
from test_ui import CHROMIUM, KIB, MIB, UI_DIR, need_browser


@pytest.mark.stack(rate=256 * KIB)
def test_ui_kubelet_failure_and_pods(stack, kube, server_binary, cri_available, build_dir):
    node = need_browser()
    srv = stack.server(env={"PULLTRACE_KUBECONFIG": kube.write_kubeconfig()})
    srv.wait_kube_ready(20)
    url = srv.url
    stack.agent(srv, node_name="e2e-node", env={"PULLTRACE_REPORT_INTERVAL": "500ms"})

    app = stack.images.image("e2e/ui-kube", "v2", layers=[2 * MIB, 2 * MIB])
    ok_ref = stack.ref(app)
    ok_pod = kube.add_pod("shop", "web-1", "e2e-node", [("web", ok_ref)])
    kube.add_event(ok_pod, "Pulling", f'Pulling image "{ok_ref}"')
    stack.cri_pull(app, background=True)

    bad_ref = f"{stack.pull_host}/e2e/ui-missing:does-not-exist"
    bad_pod = kube.add_pod("batch", "job-7", "e2e-node", [("job", bad_ref)])
    kube.add_event(bad_pod, "Pulling", f'Pulling image "{bad_ref}"')
    r = stack.cri_pull(bad_ref, check=False)
    assert r.returncode != 0, "pulling a tag that does not exist must fail"
    err = " ".join(r.stderr.split())[:300] or "not found"
    kube.add_event(bad_pod, "Failed", f'Failed to pull image "{bad_ref}": {err}',
                   type_="Warning")

    # What the UI must show has to be in the server first.
    t0 = time.monotonic()

    def failed_in_api():
        return any(p["state"] == "failed" and p["image"] == bad_ref
                   for p in srv.pulls())
    try:
        wait_until(failed_in_api, 60, what="the kubelet failure in the server")
    except TimeoutError:
        for p in srv.pulls():
            print("server pull:", p["id"], p["image"], p["state"], p["error"], p["pods"])
        m = srv.metrics().text
        print("\n".join(l for l in m.splitlines() if l.startswith("pulltrace_kube")))
        raise
    print(f"the failed pull reached the server's API after {time.monotonic() - t0:.1f}s")

    # kubelet confirms the good pull with its own duration, which the details show.
    def ok_pull():
        return srv.find(lambda p: p["image"] == ok_ref)
    wait_until(lambda: (ok_pull() or {}).get("state") == "completed", 90,
               what="the good pull completed")
    kube.add_event(ok_pod, "Pulled", f'Successfully pulled image "{ok_ref}" in 8.25s '
                                     f'(8.5s including waiting)')
    wait_until(lambda: (ok_pull() or {}).get("kubelet"), 20, what="kubelet's duration")

    cfg = {"url": url + "/", "okImage": ok_ref, "okPod": "shop/web-1",
           "failedImage": bad_ref, "failedPod": "batch/job-7",
           "shots": str(Path(build_dir) / "ui-screenshots"), "chromium": CHROMIUM}
    res = subprocess.run([node, str(UI_DIR / "e2e" / "kube.mjs"), json.dumps(cfg)],
                         cwd=UI_DIR, capture_output=True, text=True, timeout=180)
    msgs = [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]
    for m in msgs:
        print("browser:", json.dumps(m))
    for p in srv.pulls():
        print("server pull:", p["id"], p["image"], p["state"], p["error"], p["pods"])
    assert res.returncode == 0, f"{[m for m in msgs if 'error' in m]}\n{res.stderr[-3000:]}"
    assert [m["phase"] for m in msgs if "phase" in m] == ["correlated", "kubelet", "failed",
                                                          "filters", "done"]
    assert srv.running()
