"""Chaos on the real stack: containerd restarted under the agent (its socket in a directory,
as the chart mounts it, so the socket file is recreated), pulltrace-server killed with
`kill -9` and started again while a pull is under way, the (fake) Kubernetes API server
answering 500s and then 410 Gone, and watches that hang. A foreign report for the node is
replaced by the agent's next one. Each ends with the live view correct and nothing lost that
the agent still holds: the agent reports its full state, the server rebuilds from it, the
watcher relists. Lean on purpose: one stack, one agent, two small pulls. Nothing here
asserts on speed."""
# ctest: TIMEOUT=300

import time
from datetime import datetime

import pytest
import requests

from harness import reports, wait_until

TOKEN = "chaos"
NODE = "chaos-node"
KIB = 1024


def pull_of(srv, image):
    return srv.find(lambda p: p["manifestDigest"] == image.manifest_digest, node=NODE)


def pull_of_node(srv, node):
    return next(iter(srv.pulls(node=node)), None)


def nodes(srv):
    return requests.get(srv.url + "/api/v1/nodes", timeout=5).json()["nodes"]


def label_value(srv, name, labels):
    return srv.metric(name, labels) or 0


@pytest.mark.stack(rate=256 * KIB)
def test_the_live_view_survives_restarts_kills_and_api_faults(stack, kube, cri_available):
    if not cri_available:
        pytest.skip("pt-cri-pull not built")
    # Short watches: a hung one is given up timeoutSeconds + 60 s after it began.
    env = {"PULLTRACE_KUBECONFIG": str(kube.write_kubeconfig()),
           "PULLTRACE_REPORT_MIN_INTERVAL": "0", "PULLTRACE_KUBE_WATCH_TIMEOUT": "5s"}
    srv = stack.server(token=TOKEN, env=env).wait_kube_ready(20)
    stack.agent(srv, node_name=NODE, env={"PULLTRACE_AGENT_TOKEN": TOKEN,
                                          "PULLTRACE_REPORT_INTERVAL": "500ms"})
    first = stack.images.image("e2e/chaos-a", "v1", layers=[1024 * KIB, 512 * KIB])
    second = stack.images.image("e2e/chaos-b", "v1", layers=[768 * KIB])
    pod = kube.add_pod("chaos", "app-a", NODE, [("a", stack.ref(first))])
    wait_until(lambda: any(n["name"] == NODE for n in nodes(srv)), 30, what="the agent")

    # 1. containerd restarts: the socket file is recreated in its directory; the agent
    #    reconnects by itself and sees the next pull.
    stack.containerd.restart()
    kube.add_event(pod, "Pulling", f'Pulling image "{stack.ref(first)}"')
    pull = stack.cri_pull(first, background=True)
    wait_until(lambda: pull_of(srv, first), 60, what="the pull after containerd's restart")

    # 2. The server dies with kill -9 in the middle of that pull and comes back on the same
    #    addresses: the agent's next report gives it the pull again, which then completes.
    srv.kill()
    srv = stack.server(token=TOKEN, env=env, http_addr=srv.http_addr,
                       metrics_addr=srv.metrics_addr).wait_kube_ready(20)
    assert pull.result(timeout=120).returncode == 0
    done = wait_until(lambda: (lambda p: p if p and p["state"] == "completed" else None)(
        pull_of(srv, first)), 60, what="the pull completed on the restarted server")
    assert done["downloadedBytes"] == done["totalBytes"] == first.total_bytes
    assert done["layersDone"] == len(first.layers)

    # 3. The API server fails: its watches drop, the next requests get 500s, and the
    #    history the watch would resume from is compacted (410 Gone). The watcher backs
    #    off, relists and sees what changed meanwhile.
    errors = label_value(srv, "pulltrace_kube_request_errors_total", {"resource": "pods"})
    relists = label_value(srv, "pulltrace_kube_relists_total", {"resource": "pods"})
    kube.fail_next(500, 500, 500)
    kube.compact()
    kube.drop_watches()
    later = kube.add_pod("chaos", "app-b", NODE, [("b", stack.ref(second))])
    wait_until(lambda: label_value(srv, "pulltrace_kube_request_errors_total",
                                   {"resource": "pods"}) >= errors + 1, 60,
               what="the failed requests counted")
    wait_until(lambda: label_value(srv, "pulltrace_kube_relists_total",
                                   {"resource": "pods"}) > relists, 60, what="a relist")
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 2, 60,
               what="the pod added during the faults")
    kube.add_event(later, "Pulling", f'Pulling image "{stack.ref(second)}"')
    assert stack.cri_pull(second).returncode == 0
    other = wait_until(lambda: (lambda p: p if p and p["state"] == "completed" else None)(
        pull_of(srv, second)), 60, what="a pull after the API faults")
    assert other["downloadedBytes"] == second.total_bytes

    # 4. Watches that hang (a dead proxy on the way): answered, then silent, past their
    #    timeoutSeconds. The watcher gives up on them and watches again from where it was.
    kube.hang_watches(2)
    kube.drop_watches()
    wait_until(lambda: kube.hangs == 0, 30, what="both watches hanging")
    kube.add_pod("chaos", "app-c", NODE, [("c", stack.ref(second))])
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 3, 180,
               what="the pod added while the watches hung")

    # 5. A report that names this node but comes from elsewhere (anyone holding the shared
    #    token can send one; PULLTRACE_AGENT_AUTH=kubernetes refuses it with 403): it claims
    #    an empty node under another boot id. The agent's next full report puts the node's
    #    pulls back.
    spoof = srv.post(reports.report(NODE, 10 ** 9, pulls=[], boot="not-the-agent"))
    assert spoof.status_code == 200 and spoof.json()["status"] == "applied", spoof.text
    wait_until(lambda: {p["manifestDigest"] for p in srv.pulls(node=NODE, state="completed")}
               >= {first.manifest_digest, second.manifest_digest}, 30,
               what="the agent's pulls back after the foreign report")

    # The live view at the end: both pulls completed, nothing in flight, the node reporting.
    assert {p["manifestDigest"] for p in srv.pulls(node=NODE, state="completed")} >= {
        first.manifest_digest, second.manifest_digest}
    assert srv.pulls(node=NODE, state="pulling") == [] and srv.pulls(node=NODE, state="stalled") == []
    assert [(n["name"], n["state"]) for n in nodes(srv)] == [(NODE, "ok")]


def near(text, t, slack=120):
    """True when RFC 3339 `text` is within `slack` seconds of Unix time `t`."""
    return abs(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - t) <= slack


@pytest.mark.stack(containerd=False)
def test_a_node_whose_clock_is_an_hour_behind(stack, kube):
    """Every time in a report is the node's clock (the agent's own and containerd's ingest
    times, one clock on a real node), so a node an hour behind is emulated by its reports.
    (libfaketime cannot do it with the real daemons: containerd, a Go program, reads the
    clock without libc, so only the agent would be shifted, which no real node does.) The
    server puts the times on its own clock: the pull starts and completes now, its duration
    is seconds, and it is matched with kubelet's events for its pod."""
    srv = stack.server(token=TOKEN, env={"PULLTRACE_KUBECONFIG": str(kube.write_kubeconfig()),
                                         "PULLTRACE_REPORT_MIN_INTERVAL": "0"}
                       ).wait_kube_ready(20)
    node, image = "skewed-node", "registry.example/skew/app"
    pod = kube.add_pod("skew", "web", node, [("web", image + ":v1")])
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 1, 30, what="the pod")
    kube.add_event(pod, "Pulling", f'Pulling image "{image}:v1"')
    off = -3600
    started = time.time() + off

    def send(seq, downloaded, completed=None):
        t = time.time() + off
        layer = reports.layer(reports.sha256(7), 4000, downloaded, started=started,
                              updated=t, state="done" if completed else "downloading")
        body = reports.report(node, seq, [reports.pull(
            "p1", image, reports.sha256(8), [layer], started=started, completed=completed)],
            timestamp=t)
        r = srv.post(body)
        assert r.status_code == 200 and r.json()["status"] == "applied", r.text

    send(1, 1000)
    p = wait_until(lambda: pull_of_node(srv, node), 30, what="the pull")
    assert near(p["startedAt"], time.time()), p["startedAt"]
    assert p["durationSeconds"] < 600
    send(2, 4000, completed=time.time() + off)
    kube.add_event(pod, "Pulled", f'Successfully pulled image "{image}:v1" in 2.1s '
                                  f'(2.1s including waiting). Image size: 4000 bytes.')
    done = wait_until(lambda: (lambda x: x if x and x["state"] == "completed" and x["pods"]
                               else None)(pull_of_node(srv, node)), 30,
                      what="the pull completed and matched with its pod")
    assert near(done["completedAt"], time.time())
    assert done["durationSeconds"] < 600
    assert [(x["namespace"], x["name"]) for x in done["pods"]] == [("skew", "web")]
    assert any(line.get("msg", "").startswith("the agent's clock differs") and
               abs(line.get("offsetSeconds", 0) - 3600) < 60 for line in srv.log_json())
