"""pulltrace-server against the Kubernetes API (the fake API server of harness/kubeapi.py,
over HTTPS with a CA made at test time), standing in for kubelet: Pod and Event objects go to
the fake API, pulls go through CRI PullImage on the real containerd.
Nothing here asserts on speed: every wait is for a state, with a generous deadline."""
# ctest: TIMEOUT=900

import re
import time

import pytest
import requests

from harness import reports, wait_until

KIB = 1024
MIB = 1024 * 1024
NODE = "e2e-node"


# -- helpers ---------------------------------------------------------------------------------

def start_server(stack, env):
    return stack.server(env=dict({"PULLTRACE_SSE_HEARTBEAT": "500ms"}, **env))


def kubelet_pull_fails(stack, kube, pod, ref):
    """kubelet's CRI pull of `ref` for `pod`, which must fail, and kubelet's two Failed
    events about it; returns the first one's message (the CRI error)."""
    r = stack.cri_pull(ref, check=False)
    assert r.returncode != 0, f"the pull of {ref} must fail"
    err = " ".join(r.stderr.split())[:400] or "no error text"
    message = f'Failed to pull image "{ref}": {err}'
    kube.add_event(pod, "Failed", message, type_="Warning")
    kube.add_event(pod, "Failed", "Error: ErrImagePull", type_="Warning")
    return message


def pods_of(pull):
    return sorted((p["namespace"], p["name"]) for p in pull["pods"])


def kube_get(kube, path, **params):
    """GET of the fake API server as a client with its token and CA would do it."""
    r = requests.get(kube.url + path, params=params, verify=str(kube.ca_file), timeout=10,
                     headers={"Authorization": f"Bearer {kube.token}"})
    r.raise_for_status()
    return r.json()


def event_on(kube, pod, reason, type_, timeout=60):
    """Waits for the server's `reason` Event on `pod` (a Pod object) and returns it: the only
    one, an events.k8s.io/v1 Event as `kubectl describe pod` finds them (regarding the Pod by
    uid)."""
    meta = pod["metadata"]
    found = wait_until(lambda: kube.events_v1_list(meta["namespace"], reason), timeout,
                       what=f"a {reason} Event")
    assert len(found) == 1, found
    ev = found[0]
    assert ev["apiVersion"] == "events.k8s.io/v1" and ev["kind"] == "Event"
    assert ev["metadata"]["namespace"] == meta["namespace"]
    assert ev["metadata"]["name"].startswith(meta["name"] + ".")
    assert ev["regarding"] == {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]}
    assert ev["reportingController"] == "pulltrace.io/server"
    assert ev["reportingInstance"]
    assert ev["reason"] == reason and ev["type"] == type_
    return ev


def server_with_kubeconfig(stack, kube, **env):
    srv = start_server(stack, dict(PULLTRACE_KUBECONFIG=kube.write_kubeconfig(), **env))
    return srv.wait_kube_ready(20)


# -- tests -----------------------------------------------------------------------------------

@pytest.mark.stack(rate=512 * KIB)
def test_kubelet_pull_names_pod_tag_and_namespace(stack, kube, cri_available):
    app = stack.images.image("e2e/app", "v1", layers=[1 * MIB, 1 * MIB])
    ref = stack.ref(app)  # 127.0.0.1:<nginx port>/e2e/app:v1; the agent sees 127.0.0.1/e2e/app
    pod = kube.add_pod("shop", "web-1", NODE, [("web", ref)])
    kube.add_pod("shop", "other", NODE, [("db", "docker.io/library/postgres:16")])
    srv = server_with_kubeconfig(stack, kube)
    events = srv.events()
    stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})

    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    t0 = time.monotonic()
    stack.cri_pull(app)
    took = time.monotonic() - t0
    kube.add_event(pod, "Pulled", f'Successfully pulled image "{ref}" in {took:.3f}s '
                                  f'({took:.3f}s including waiting). Image size: '
                                  f'{app.total_bytes} bytes.')

    def done():
        p = srv.find(lambda p: p["manifestDigest"] == app.manifest_digest)
        return p if p and p["state"] == "completed" and p["pods"] else None
    p = wait_until(done, 60, what="the completed, correlated pull")
    assert pods_of(p) == [("shop", "web-1")]
    assert p["pods"][0].get("container") == "web"
    assert p["image"] == ref
    assert p["source"] == "agent"
    # Filtering by namespace goes through the pods.
    assert [x["id"] for x in srv.pulls(namespace="shop")] == [p["id"]]
    assert srv.pulls(namespace="default") == []
    # The event stream names the pod too.
    wait_until(lambda: events.of("pull.completed", lambda x: x["id"] == p["id"]), 20,
               what="pull.completed on the stream")
    assert any(pods_of(e["data"]["pull"]) == [("shop", "web-1")]
               for e in events.of("pull.completed", lambda x: x["id"] == p["id"]))
    m = srv.metrics()
    assert m.value("pulltrace_kube_synced") == 1
    assert m.value("pulltrace_kube_objects_cached", {"resource": "pods"}) == 2
    events.close()


@pytest.mark.stack(rate=2 * MIB)
def test_missing_tag_is_a_failed_pull_with_kubelets_message(stack, kube, cri_available):
    stack.images.image("e2e/app", "v1", layers=[256 * KIB])
    ref = f"{stack.pull_host}/e2e/app:does-not-exist"
    # An old failure from before the server started never becomes a pull.
    old_ref = f"{stack.pull_host}/e2e/app:old"
    old_pod = kube.add_pod("shop", "old-1", NODE, [old_ref])
    kube.add_event(old_pod, "Failed", f'Failed to pull image "{old_ref}": old', type_="Warning",
                   at=time.time() - 600)
    srv = server_with_kubeconfig(stack, kube)
    events = srv.events()
    pod = kube.add_pod("shop", "web-2", NODE, [("web", ref)])
    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    message = kubelet_pull_fails(stack, kube, pod, ref)

    failed = wait_until(lambda: events.of("pull.failed", lambda p: p["image"] == ref), 20,
                        what="pull.failed on the stream")
    p = failed[0]["data"]["pull"]
    assert p["state"] == "failed" and p["source"] == "kubelet"
    assert p["error"] == {"reason": "Failed", "message": message}
    assert pods_of(p) == [("shop", "web-2")]
    api = srv.find(lambda x: x["id"] == p["id"], state="failed")
    assert api is not None and api["error"]["message"] == message
    assert pods_of(api) == [("shop", "web-2")]
    assert [x["id"] for x in srv.pulls(namespace="shop", state="failed")] == [p["id"]]
    assert srv.metric("pulltrace_pull_errors_total", {"reason": "Failed"}) == 1
    # kubelet's back-off keeps the pull failed, with the latest reason.
    kube.add_event(pod, "BackOff", f'Back-off pulling image "{ref}"')
    wait_until(lambda: events.of("pull.failed", lambda x: x["id"] == p["id"] and
                                 x["error"]["reason"] == "BackOff"), 20, what="BackOff")
    assert len([x for x in srv.pulls() if x["image"] == ref]) == 1
    assert not any("old" in (x["image"] or "") for x in srv.pulls())
    assert srv.metric("pulltrace_kube_events_total", {"outcome": "historic"}) >= 1
    events.close()


@pytest.mark.stack(rate=256 * KIB)
def test_two_images_at_once_on_one_node_are_told_apart(stack, kube, cri_available):
    # Two tags of one repository: the agent reports both as 127.0.0.1/e2e/app, so only the
    # pods' images and kubelet's Pulling events can tell the pulls apart.
    v1 = stack.images.image("e2e/app", "v1", layers=[2 * MIB, 2 * MIB, 2 * MIB])
    v2 = stack.images.image("e2e/app", "v2", layers=[1 * MIB, 1 * MIB])
    other = stack.images.image("e2e/tool", "v9", layers=[1 * MIB, 1 * MIB])
    pa = kube.add_pod("team-a", "pod-a", NODE, [("app", stack.ref(v1))])
    pb = kube.add_pod("team-b", "pod-b", NODE, [("app", stack.ref(v2))],
                      init_images=[("setup", stack.ref(other))])
    srv = server_with_kubeconfig(stack, kube)
    stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})

    kube.add_event(pa, "Pulling", f'Pulling image "{stack.ref(v1)}"', container="app")
    h1 = stack.cri_pull(v1, background=True)
    wait_until(lambda: srv.find(lambda p: p["manifestDigest"] == v1.manifest_digest), 30,
               what="the first pull")
    time.sleep(3)  # kubelet timestamps have second precision: keep the Pulling events apart
    kube.add_event(pb, "Pulling", f'Pulling image "{stack.ref(v2)}"', container="app")
    kube.add_event(pb, "Pulling", f'Pulling image "{stack.ref(other)}"', container="setup")
    h2 = stack.cri_pull(v2, background=True)
    h3 = stack.cri_pull(other, background=True)
    for h in (h1, h2, h3):
        assert h.result(timeout=120).returncode == 0

    def both():
        p1 = srv.find(lambda p: p["manifestDigest"] == v1.manifest_digest)
        p2 = srv.find(lambda p: p["manifestDigest"] == v2.manifest_digest)
        p3 = srv.find(lambda p: p["manifestDigest"] == other.manifest_digest)
        if all(p and p["state"] == "completed" and p["pods"] for p in (p1, p2, p3)):
            return p1, p2, p3
        return None
    p1, p2, p3 = wait_until(both, 60, what="three completed, correlated pulls")
    assert p1["id"] != p2["id"]
    assert pods_of(p1) == [("team-a", "pod-a")] and p1["image"] == stack.ref(v1)
    assert pods_of(p2) == [("team-b", "pod-b")] and p2["image"] == stack.ref(v2)
    assert pods_of(p3) == [("team-b", "pod-b")] and p3["image"] == stack.ref(other)
    assert p3["pods"][0].get("container") == "setup"
    assert [x["id"] for x in srv.pulls(namespace="team-a")] == [p1["id"]]


@pytest.mark.stack(containerd=False, nginx=False)
def test_drops_410_and_restarts_lose_and_duplicate_nothing(stack, kube, tmp_path):
    sa = kube.write_service_account(tmp_path / "sa")
    srv = start_server(stack, dict(kube.in_cluster_env(sa), PULLTRACE_KUBE_TOKEN_REFRESH="1s"))
    srv.wait_kube_ready(20)
    events = srv.events()
    pods = {}
    expected = []

    def fail(i):
        ref = f"registry.example:5000/e2e/f{i}:v1"
        pods[i] = kube.add_pod("shop", f"f{i}", NODE, [ref])
        kube.add_event(pods[i], "Failed", f'Failed to pull image "{ref}": not found',
                       type_="Warning")
        expected.append(ref)

    def seen(ref):
        return wait_until(lambda: events.of("pull.failed", lambda p: p["image"] == ref), 30,
                          what=f"pull.failed of {ref}")

    fail(1)
    seen(expected[-1])
    # 1. The API server drops every watch; a change made meanwhile still arrives.
    restarts = srv.metric("pulltrace_kube_watch_restarts_total", {"resource": "events"})
    assert kube.drop_watches() >= 2
    fail(2)
    seen(expected[-1])
    wait_until(lambda: srv.metric("pulltrace_kube_watch_restarts_total",
                                  {"resource": "events"}) > restarts, 20, what="a watch restart")
    # 2. Compaction: resuming from the old resourceVersion answers 410 -> relist. A pod
    # deleted meanwhile disappears, the events listed again are not delivered twice.
    lists = dict(kube.counts["list"])
    kube.compact()
    kube.delete_pod("shop", "f1")
    fail(3)
    seen(expected[-1])
    wait_until(lambda: kube.counts["list"]["events"] > lists["events"] and
               kube.counts["list"]["pods"] > lists["pods"], 20, what="a relist")
    assert kube.counts["gone"] >= 1
    wait_until(lambda: srv.metric("pulltrace_kube_relists_total", {"resource": "pods"}) >= 1,
               20, what="the relist metric")
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 2, 20, what="the deleted pod to go")
    # 3. The API server restarts; changes made while it was down arrive after it is back,
    # through a relist (history compacted while down) or a resumed watch.
    kube.stop()
    fail(4)
    kube.delete_pod("shop", "f2")
    kube.compact()
    time.sleep(1)
    kube.start()
    seen(expected[-1])
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 2, 20, what="f2 to go")
    # 4. The service-account token rotates: the server re-reads the file (the API server now
    # accepts only the new token, so f5 arriving proves it).
    (sa / "token").write_text("rotated-token\n")
    kube.set_token("rotated-token")
    kube.drop_watches()
    fail(5)
    seen(expected[-1])
    assert srv.kube_ready()

    # Each failure exactly once, nothing more.
    time.sleep(1.5)  # give a duplicate, if any, the time to show up (not a timing assertion)
    by_image = {}
    for e in events.of("pull.failed"):
        by_image.setdefault(e["data"]["pull"]["image"], set()).add(e["id"])
    assert sorted(by_image) == sorted(expected)
    assert all(len(ids) == 1 for ids in by_image.values()), by_image
    failed = srv.pulls(state="failed")
    assert sorted(p["image"] for p in failed) == sorted(expected)
    m = srv.metrics()
    assert m.value("pulltrace_pull_errors_total", {"reason": "Failed"}) == len(expected)
    assert m.value("pulltrace_kube_events_total", {"outcome": "new"}) == len(expected)
    # f3, f4, f5 remain; the pod watch recovers from the rotation on its own back-off.
    wait_until(lambda: srv.metric("pulltrace_kube_pods") == 3, 60, what="the pods after rotation")
    events.close()


def report(node, image_ref, started):
    return reports.report(node, 1, pulls=[reports.pull(
        f"{node}/p1", image_ref, "sha256:" + "c" * 64, started=started,
        layers=[reports.layer("sha256:" + "b" * 64, 2000, 500)])])


CUSTOM_CORRELATE = """
-- Every pull on a node serves the pods of namespace "batch" there, and is named by the
-- pods' annotation-free image with the tag "pinned".
pulltrace.correlate(function(pull, pods, events)
  local matches = {}
  for _, pod in ipairs(pods) do
    if pod.namespace == "batch" then
      matches[#matches + 1] = { namespace = pod.namespace, pod = pod.name }
    end
  end
  return { matches = matches, imageRef = "custom.example/" .. pull.imageRef .. ":pinned" }
end)
"""


@pytest.mark.stack(containerd=False, nginx=False)
@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
def test_custom_correlation_script_changes_the_result(stack, kube, tmp_path, custom):
    kube.add_pod("shop", "web-1", NODE, [("web", "127.0.0.1:5001/e2e/app:v1")])
    kube.add_pod("batch", "job-1", NODE, [("run", "docker.io/library/busybox:1")])
    pod = kube.pod("shop", "web-1")
    kube.add_event(pod, "Pulling", 'Pulling image "127.0.0.1:5001/e2e/app:v1"')
    env = {}
    if custom:
        d = tmp_path / "policy"
        d.mkdir()
        (d / "correlate.lua").write_text(CUSTOM_CORRELATE)
        env["PULLTRACE_POLICY_DIR"] = d
    srv = server_with_kubeconfig(stack, kube, **env)
    r = srv.post(report(NODE, "127.0.0.1/e2e/app", time.time() - 1))
    assert r.status_code == 200, r.text
    p = wait_until(lambda: srv.find(lambda x: x["pods"]), 20, what="a correlated pull")
    if custom:
        assert pods_of(p) == [("batch", "job-1")]
        assert p["image"] == "custom.example/127.0.0.1/e2e/app:pinned"
    else:
        assert pods_of(p) == [("shop", "web-1")]
        assert p["image"] == "127.0.0.1:5001/e2e/app:v1"


def tracked(srv, state):
    return srv.metric("pulltrace_pulls_tracked", {"state": state})


@pytest.mark.stack(rate=512 * KIB)
def test_kubelet_retry_supersedes_its_failed_kubelet_pull(stack, kube, cri_available):
    # kubelet's first attempt fails before the agent sees a byte (the registry is down), so
    # the failure is a kubelet-only pull; the retry succeeds once the registry is back. The
    # failure must then be history on the agent's pull, not a current failure forever.
    # (Layers big enough for the agent's polls to see the retry's ingests.)
    app = stack.images.image("e2e/app", "v1", layers=[1 * MIB, 1 * MIB])
    ref = stack.ref(app)
    pod = kube.add_pod("shop", "web-3", NODE, [("web", ref)])
    srv = server_with_kubeconfig(stack, kube)
    events = srv.events()
    stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})

    stack.nginx.stop()
    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    failed_msg = kubelet_pull_fails(stack, kube, pod, ref)
    backoff_msg = f'Back-off pulling image "{ref}"'
    kube.add_event(pod, "BackOff", backoff_msg)
    failed = wait_until(lambda: events.of("pull.failed", lambda p: p["image"] == ref and
                                          p["error"]["reason"] == "BackOff"), 20,
                        what="the kubelet-only failure (BackOff)")
    kpull = failed[-1]["data"]["pull"]
    assert kpull["source"] == "kubelet" and kpull["state"] == "failed"
    assert kpull["resolvedError"] is None and kpull["kubelet"] is None
    assert [p["id"] for p in srv.pulls(state="failed")] == [kpull["id"]]
    assert tracked(srv, "failed") == 1

    # kubelet retries: the registry is back and the pull goes through.
    stack.nginx.start()
    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    t0 = time.monotonic()
    stack.cri_pull(app)
    took = time.monotonic() - t0

    def agent_done():
        p = srv.find(lambda p: p["manifestDigest"] == app.manifest_digest)
        return p if p and p["state"] == "completed" else None
    agent = wait_until(agent_done, 60, what="the agent's completed pull")
    # The agent's completion alone resolves the failure: no kubelet Pulled event yet.
    wait_until(lambda: not srv.pulls(state="failed"), 20, what="no current failure")
    assert srv.find(lambda p: p["id"] == kpull["id"]) is None
    ev = wait_until(lambda: [e for e in list(events.events) if e["event"] == "pull.evicted"
                             and e["data"]["pullId"] == kpull["id"]], 20,
                    what="pull.evicted of the kubelet pull")
    assert ev[0]["data"]["reason"] == "superseded"
    assert ev[0]["data"]["supersededBy"] == agent["id"]
    agent = srv.find(lambda p: p["id"] == agent["id"])
    assert agent["state"] == "completed" and agent["error"] is None
    assert agent["resolvedError"]["reason"] == "BackOff"
    assert agent["resolvedError"]["message"] == failed_msg  # the cause, not the back-off
    assert agent["resolvedError"]["failedAt"] and agent["resolvedError"]["resolvedAt"]
    assert pods_of(agent) == [("shop", "web-3")]
    done = events.of("pull.completed", lambda p: p["id"] == agent["id"])
    assert done and done[-1]["data"]["pull"]["resolvedError"]["reason"] == "BackOff"
    m = srv.metrics()
    assert m.value("pulltrace_pulls_tracked", {"state": "failed"}) == 0
    assert m.value("pulltrace_pulls_active", {"state": "pulling"}) == 0
    assert m.value("pulltrace_pulls_active", {"state": "stalled"}) == 0
    assert m.value("pulltrace_pull_errors_total", {"reason": "Failed"}) == 1  # the failure happened

    # kubelet's confirmation brings its own measure of the pull.
    kube.add_event(pod, "Pulled", f'Successfully pulled image "{ref}" in {took:.3f}s '
                                  f'({took + 0.25:.3f}s including waiting). Image size: '
                                  f'{app.total_bytes} bytes.')
    p = wait_until(lambda: srv.find(lambda x: x["id"] == agent["id"] and x["kubelet"]), 20,
                   what="kubelet's duration on the pull")
    assert p["kubelet"]["durationSeconds"] == pytest.approx(float(f"{took:.3f}"))
    assert p["kubelet"]["waitingSeconds"] == pytest.approx(float(f"{took + 0.25:.3f}"))
    assert p["kubelet"]["pulledAt"]
    assert p["state"] == "completed" and p["resolvedError"]["reason"] == "BackOff"
    assert wait_until(lambda: events.of("pull.progress", lambda x: x["id"] == agent["id"]
                                        and x["kubelet"]), 20, what="the change on the stream")
    assert len([x for x in srv.pulls() if x["image"] == ref]) == 1
    events.close()


@pytest.mark.stack(containerd=False, nginx=False)
def test_already_present_is_not_a_pull_and_kubelet_success_resolves_failure(stack, kube):
    ref = "127.0.0.1:5001/e2e/app:v1"
    pod = kube.add_pod("shop", "web-1", NODE, [("web", ref)])
    srv = server_with_kubeconfig(stack, kube)
    events = srv.events()
    r = srv.post(report(NODE, "127.0.0.1/e2e/app", time.time() - 1))
    assert r.status_code == 200, r.text
    before = wait_until(lambda: srv.find(lambda x: x["pods"]), 20, what="a correlated pull")
    seen = srv.metric("pulltrace_kube_events_total", {"outcome": "new"})
    n_pull_events = len([e for e in list(events.events) if e["event"].startswith("pull.")])

    # "already present" for the image being pulled, for another pod's image, and for a pod
    # whose pull failed: none of them creates, changes or resolves a pull.
    kube.add_event(pod, "Pulled", f'Container image "{ref}" already present on machine')
    other = kube.add_pod("shop", "tool-1", NODE, [("tool", "docker.io/library/busybox:1")])
    kube.add_event(other, "Pulled", 'Container image "docker.io/library/busybox:1" already '
                                    'present on machine')
    bad_ref = "registry.example:5000/e2e/tool:v3"
    bad = kube.add_pod("batch", "job-1", NODE, [("run", bad_ref)])
    fail_msg = f'Failed to pull image "{bad_ref}": 503 Service Unavailable'
    kube.add_event(bad, "Failed", fail_msg, type_="Warning")
    kpull = wait_until(lambda: srv.find(lambda x: x["image"] == bad_ref), 20,
                       what="the kubelet-only failed pull")["id"]
    kube.add_event(bad, "Pulled", f'Container image "{bad_ref}" already present on machine')
    wait_until(lambda: srv.metric("pulltrace_kube_events_total", {"outcome": "new"})
               >= seen + 4, 20, what="the server to receive the events")
    pulls = srv.pulls()
    assert sorted(p["id"] for p in pulls) == sorted([before["id"], kpull])
    after = srv.find(lambda x: x["id"] == before["id"])
    for k in ("state", "image", "pods", "updatedAt", "error", "kubelet", "resolvedError",
              "downloadedBytes"):
        assert after[k] == before[k], k
    assert after["kubelet"] is None
    k = srv.find(lambda x: x["id"] == kpull)
    assert k["state"] == "failed" and k["error"]["message"] == fail_msg
    # The only pull events since: the kubelet failure (started + failed).
    new = [e for e in list(events.events) if e["event"].startswith("pull.")][n_pull_events:]
    assert sorted(e["event"] for e in new) == ["pull.failed", "pull.started"]
    assert all(e["data"]["pull"]["id"] == kpull for e in new)
    assert tracked(srv, "failed") == 1

    # kubelet's retry succeeds and no agent saw it: kubelet's word completes the pull, the
    # failure stays as history.
    kube.add_event(bad, "Pulled", f'Successfully pulled image "{bad_ref}" in 1.5s '
                                  f'(2.25s including waiting). Image size: 1234 bytes.')
    done = wait_until(lambda: events.of("pull.completed", lambda x: x["id"] == kpull), 20,
                      what="pull.completed of the kubelet pull")
    p = done[-1]["data"]["pull"]
    assert p["state"] == "completed" and p["source"] == "kubelet" and p["error"] is None
    assert p["resolvedError"]["reason"] == "Failed"
    assert p["resolvedError"]["message"] == fail_msg
    assert p["kubelet"]["durationSeconds"] == 1.5
    assert p["kubelet"]["waitingSeconds"] == 2.25
    assert srv.pulls(state="failed") == []
    assert [x["id"] for x in srv.pulls(state="completed")] == [kpull]
    m = srv.metrics()
    assert m.value("pulltrace_pulls_tracked", {"state": "failed"}) == 0
    assert m.value("pulltrace_pulls_tracked", {"state": "completed"}) == 1
    assert m.value("pulltrace_pull_errors_total", {"reason": "Failed"}) == 1
    events.close()


@pytest.mark.stack(rate=2 * MIB)
def test_stalled_pull_is_an_event_on_its_pod(stack, kube, cri_available):
    """A pull stalled through a frozen registry proxy shows as a Kubernetes Event on its pod
    (events.k8s.io/v1, as `kubectl describe pod` lists them: regarding the Pod by uid); thawed,
    a PullResumed Event follows; stalled again, the first Event's series counts the repeat
    (PATCH) instead of a new Event."""
    app = stack.images.image("e2e/frozen", "v1", layers=[24 * MIB, 24 * MIB])
    ref = stack.ref(app)
    pod = kube.add_pod("shop", "web-1", NODE, [("web", ref)])
    srv = server_with_kubeconfig(stack, kube, PULLTRACE_STALL_ALERT_AFTER="1s")
    events = srv.events()
    try:
        stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms",
                                                  "PULLTRACE_STALL_THRESHOLD": "2s"})
        kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
        stack.cri_pull(app, background=True)
        moving = events.wait(lambda e: e["event"] in ("pull.started", "pull.progress")
                             and e["data"]["pull"]["manifestDigest"] == app.manifest_digest
                             and pods_of(e["data"]["pull"]) == [("shop", "web-1")]
                             and 0 < e["data"]["pull"]["downloadedBytes"] < app.total_bytes,
                             timeout=60, what="bytes moving for shop/web-1")
        pull_id = moving["data"]["pull"]["id"]
        stack.nginx.freeze()

        ev = event_on(kube, pod, "PullStalled", "Warning")
        assert ev["action"] == "Pulling"
        assert ev["note"].startswith("layer sha256:")
        assert f"of {ref} has received no byte for" in ev["note"]
        assert "series" not in ev

        # The same Event through the API as kubectl reads it (a field selector on the pod).
        listed = kube_get(kube, "/apis/events.k8s.io/v1/namespaces/shop/events",
                          fieldSelector="regarding.name=web-1,reason=PullStalled")
        assert listed["kind"] == "EventList" and listed["apiVersion"] == "events.k8s.io/v1"
        assert [i["metadata"]["name"] for i in listed["items"]] == [ev["metadata"]["name"]]

        stack.nginx.thaw()
        resumed = event_on(kube, pod, "PullResumed", "Normal")
        assert "receiving bytes again" in resumed["note"]

        # Stalled again while the pull is still under way: a repeat, counted in the first
        # Event's series.
        stack.nginx.freeze()
        assert not events.of("pull.completed", pull=lambda p: p["id"] == pull_id), \
            "the pull completed before it could stall again: make the image bigger"
        again = wait_until(lambda: [e for e in kube.events_v1_list("shop", "PullStalled")
                                    if e.get("series", {}).get("count") == 2], 60,
                           what="the PullStalled series counting the repeat")
        assert len(kube.events_v1_list("shop", "PullStalled")) == 1
        assert again[0]["metadata"]["name"] == ev["metadata"]["name"]
        assert again[0]["note"] == ev["note"]
        assert again[0]["series"]["lastObservedTime"] > ev["eventTime"]
        patches = [w for w in kube.event_writes if w[0] == "PATCH"]
        assert patches and patches[-1][2] == "application/merge-patch+json"
        stack.nginx.thaw()
        m = srv.metrics()
        assert m.value("pulltrace_kube_event_writes_total", {"result": "created"}) == 2
        assert m.value("pulltrace_kube_event_writes_total", {"result": "failed"}) == 0
        assert m.value("pulltrace_kube_event_writes_total", {"result": "skipped"}) == 0
    finally:
        events.close()


@pytest.mark.stack(rate=2 * MIB)
def test_pull_far_slower_than_usual_is_an_event_on_its_pod(stack, kube, cri_available, tmp_path):
    """With the history kept, five pulls of an image give it a usual pull time; a pull of the
    same image through a registry throttled far below it raises pull.slow, and the default
    policy's PullSlow shows as a Kubernetes Event on the pod, saying how long it has run
    against the image's median."""
    app = stack.images.image("e2e/slow", "v1", layers=[3 * MIB, 3 * MIB])
    ref = stack.ref(app)
    data = tmp_path / "data"
    data.mkdir()
    seed = kube.add_pod("shop", "web-0", NODE, [("web", ref)])
    srv = server_with_kubeconfig(stack, kube, PULLTRACE_DATA_DIR=str(data),
                                 PULLTRACE_SLOW_PULL_MIN_DURATION="1s")
    events = srv.events()
    try:
        stack.agent(srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})
        done = []
        for i in range(5):
            kube.add_event(seed, "Pulling", f'Pulling image "{ref}"')
            stack.cri_pull(app)
            ev = events.wait(lambda e: e["event"] == "pull.completed"
                             and e["data"]["pull"]["manifestDigest"] == app.manifest_digest
                             and e["data"]["pull"]["id"] not in done,
                             timeout=60, what=f"seed pull {i + 1} completed")
            done.append(ev["data"]["pull"]["id"])
            stack.cri_remove(app)
        # The five are in the history under the image the live pull will have (with its tag).
        stats = wait_until(lambda: [s for s in requests.get(
            srv.url + "/api/v1/history/stats", params={"image": "e2e/slow"}, timeout=10)
            .json()["images"] if s["image"] == ref and s["completed"] == 5], 30,
            what="five completed pulls of the image in the history")
        usual = stats[0]["durationSeconds"]["p50"]
        assert not kube.events_v1_list("shop", "PullSlow"), "a seed pull was slow"
        kube.delete_pod("shop", "web-0")

        # The same image, now at a fraction of the rate the seeds had: nginx restarted (a
        # reload applies the rate only once its new workers run, which may be after the pull
        # began) and serving again on the same port before the pull.
        stack.nginx.restart(rate=64 * KIB)
        pod = kube.add_pod("shop", "web-1", NODE, [("web", ref)])
        kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
        stack.cri_pull(app, background=True)
        ev = event_on(kube, pod, "PullSlow", "Warning", timeout=90)
        assert ev["note"].startswith(f"pull of {ref} on node {NODE} has run ")
        # The median the server read, in whole seconds: the stats API's, rounded either way.
        said = re.search(r"; pulls of this image usually take (\d+)s \(p50 of 5 pulls\)$", ev["note"])
        assert said and abs(int(said.group(1)) - usual) <= 1, (ev["note"], usual)
        assert not events.of("pull.completed", pull=lambda p: p["id"] not in done), \
            "the slow pull completed before its Event: it was not slow"
        alert = events.wait(lambda e: e["event"] == "alert" and e["data"]["alert"]["name"] == "PullSlow",
                            timeout=30, what="the PullSlow alert on the event stream")
        assert alert["data"]["alert"]["severity"] == "warning"
        assert alert["data"]["alert"]["summary"] == ev["note"]
    finally:
        events.close()


@pytest.mark.stack(containerd=False, nginx=False)
def test_policy_load_state_is_an_event_on_the_servers_pod(stack, kube, tmp_path):
    """A broken policy script at startup is a PolicyLoadFailed Event (Warning, with the Lua
    error) on the server's own Pod (POD_NAMESPACE/POD_NAME/POD_UID, as the chart sets them from
    the downward API); the fixed script, hot-reloaded, a PolicyLoaded Event; broken again by a
    reload, the first PolicyLoadFailed Event's series counts it."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "zz-team.lua").write_text("-- the team's alerts\n\nlocal = 3\n")
    me = kube.add_pod("pulltrace", "pulltrace-server-0", NODE, [("server", "pulltrace:1")],
                      phase="Running")
    server_with_kubeconfig(stack, kube, PULLTRACE_POLICY_DIR=str(policy),
                           POD_NAMESPACE="pulltrace", POD_NAME="pulltrace-server-0",
                           POD_UID=me["metadata"]["uid"])

    ev = event_on(kube, me, "PolicyLoadFailed", "Warning", timeout=30)
    assert ev["action"] == "LoadPolicy"
    assert ev["note"].startswith("policy failed to load at startup, running the built-in defaults: ")
    assert "zz-team.lua:3: <name> expected near '='" in ev["note"]
    assert not kube.events_v1_list("pulltrace", "PolicyLoaded")

    (policy / "zz-team.lua").write_text("local team = 'payments'\n")
    loaded = event_on(kube, me, "PolicyLoaded", "Normal")
    assert loaded["note"].startswith("policy loaded: ")

    (policy / "zz-team.lua").write_text("error('the team broke it')\n")
    again = wait_until(lambda: [e for e in kube.events_v1_list("pulltrace", "PolicyLoadFailed")
                                if e.get("series", {}).get("count") == 2], 60,
                       what="the PolicyLoadFailed series counting the failed reload")
    assert len(kube.events_v1_list("pulltrace", "PolicyLoadFailed")) == 1
    assert again[0]["metadata"]["name"] == ev["metadata"]["name"]
