"""Several pulltrace-server replicas (docs/ha.md): leader election on a coordination.k8s.io/v1
Lease in the fake API server (harness/kubeapi.py, the real Lease shapes and semantics), alert
webhooks delivered by the leader only, and agents reporting to every replica.
Nothing here asserts on speed: every wait is for a state, with a generous deadline; the lease
timings are shortened so that expiries happen within the waits."""
# ctest: TIMEOUT=900

import json

import pytest
import requests

from harness import wait_until

MIB = 1024 * 1024
NODE = "ha-node"
ALERTS_PATH = "/api/v2/alerts"   # Alertmanager API v2

NS = "default"          # the kubeconfig context's namespace: the Lease's default namespace
LEASE = "pulltrace-server"
# Short, but with the ordering the server requires (retry < renew deadline < duration).
FAST_LEASE = {"PULLTRACE_LEASE_DURATION": "3s", "PULLTRACE_LEASE_RENEW_DEADLINE": "2s",
              "PULLTRACE_LEASE_RETRY_PERIOD": "300ms"}


def readyz(srv):
    return requests.get(srv.url + "/readyz", timeout=5).json()


def is_leader(srv):
    try:
        return readyz(srv)["leader"]
    except (requests.RequestException, ValueError, KeyError):
        return False


def replica(stack, kube, name, **env):
    """A server electing with `name` as its POD_NAME, on the fake API server."""
    full = {"PULLTRACE_KUBECONFIG": str(kube.write_kubeconfig()),
            "PULLTRACE_LEADER_ELECTION": "on", "POD_NAME": name,
            "PULLTRACE_SSE_HEARTBEAT": "500ms", **FAST_LEASE}
    full.update(env)
    return stack.server(env=full)


def holder(kube):
    lease = kube.lease(NS, LEASE)
    return lease and lease["spec"].get("holderIdentity")


def the_leader(replicas):
    """The one replica that says it leads, once exactly one does."""
    def one():
        leaders = [r for r in replicas if r.running() and is_leader(r)]
        return leaders[0] if len(leaders) == 1 else None
    return wait_until(one, 30, what="exactly one leader")


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_one_leader_release_on_sigterm_takeover_after_kill(stack, kube):
    a = replica(stack, kube, "pulltrace-a")
    b = replica(stack, kube, "pulltrace-b")
    lead = the_leader([a, b])
    other = b if lead is a else a
    name = {a: "pulltrace-a", b: "pulltrace-b"}
    # The Lease as the API server stores it names the leader.
    lease = wait_until(lambda: kube.lease(NS, LEASE), 10, what="the Lease")
    assert lease["apiVersion"] == "coordination.k8s.io/v1" and lease["kind"] == "Lease"
    assert lease["spec"]["holderIdentity"] == name[lead]
    assert lease["spec"]["leaseDurationSeconds"] == 3
    assert lease["spec"]["renewTime"] and lease["spec"]["acquireTime"]
    # /readyz and the metrics of both say who leads (once the follower's first round read
    # the Lease); a follower is ready too.
    def leader_check(srv):
        return next(c for c in readyz(srv)["checks"] if c["name"] == "leader")
    wait_until(lambda: name[lead] in leader_check(other)["detail"], 30,
               what="the follower naming the leader")
    r = readyz(other)
    assert r["status"] == "ready" and r["leader"] is False and leader_check(other)["ok"]
    assert lead.metric("pulltrace_leader") == 1 and other.metric("pulltrace_leader") == 0
    assert lead.metric("pulltrace_leader_changes_total", {"change": "acquired"}) == 1
    # The leader keeps renewing: the record changes while it leads.
    renewed = lease["spec"]["renewTime"]
    wait_until(lambda: kube.lease(NS, LEASE)["spec"]["renewTime"] != renewed, 10,
               what="a renewal")
    assert holder(kube) == name[lead]

    # SIGTERM: the leader writes an empty holder, the other takes over at its next round.
    transitions = kube.lease(NS, LEASE)["spec"].get("leaseTransitions", 0)
    lead.stop()
    assert any(l.get("msg") == "leader election: lease released" for l in lead.log_json())
    wait_until(lambda: is_leader(other), 30, what="the takeover after a release")
    assert holder(kube) == name[other]
    assert kube.lease(NS, LEASE)["spec"]["leaseTransitions"] == transitions + 1

    # The stopped replica comes back as a follower of the current holder.
    lead.start()
    wait_until(lambda: lead.metric("pulltrace_leader") == 0 and
               name[other] in next(c["detail"] for c in readyz(lead)["checks"]
                                   if c["name"] == "leader"), 30, what="a follower again")

    # kill -9: no release; the follower takes over once the record stopped changing for the
    # lease duration.
    other.kill()
    wait_until(lambda: is_leader(lead), 60, what="the takeover after an expiry")
    assert holder(kube) == name[lead]
    assert any(l.get("msg") == "leader election: the lease expired; taking over"
               for l in lead.log_json())


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_conflicting_write_is_a_409_and_the_leader_keeps_the_lease(stack, kube):
    a = replica(stack, kube, "pulltrace-a")
    wait_until(lambda: is_leader(a), 30, what="the leader")
    # Another client's write lands between the leader's read and its update, twice.
    kube.interfere_lease(NS, LEASE, times=2)
    wait_until(lambda: a.metric("pulltrace_lease_requests_failed_total",
                                {"reason": "conflict"}) == 2, 30, what="two conflicts")
    assert kube.counts["lease"]["conflict"] >= 2
    # Conflicts within the renew deadline do not cost the leadership: the next round reads
    # the new resourceVersion and renews.
    wait_until(lambda: kube.lease(NS, LEASE)["metadata"]["resourceVersion"] and
               kube.counts["lease"]["update"] > kube.counts["lease"]["conflict"] + 2, 30,
               what="a renewal after the conflicts")
    assert is_leader(a) and holder(kube) == "pulltrace-a"
    assert a.metric("pulltrace_leader_changes_total", {"change": "lost"}) == 0


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_leader_that_cannot_renew_steps_down_then_recovers(stack, kube):
    a = replica(stack, kube, "pulltrace-a")
    wait_until(lambda: is_leader(a), 30, what="the leader")
    # The API server refuses the replica's credentials (401 Status) from now on: it cannot
    # renew, and stops delivering once the renew deadline passed, before any other replica
    # could take over.
    kube.set_token("rotated-elsewhere")
    wait_until(lambda: a.metric("pulltrace_leader") == 0, 30, what="stepping down")
    assert a.metric("pulltrace_leader_changes_total", {"change": "lost"}) == 1
    assert a.metric("pulltrace_lease_requests_failed_total", {"reason": "error"}) >= 1
    assert any(l.get("msg", "").startswith("leader election: lease not renewed")
               for l in a.log_json())
    kube.set_token("e2e-kube-token")
    wait_until(lambda: is_leader(a), 30, what="leading again")
    assert a.metric("pulltrace_leader_changes_total", {"change": "acquired"}) == 2


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_leader_election_configuration_errors(stack, server_binary):
    from harness import run_binary
    r = run_binary(server_binary, env={"PULLTRACE_LEADER_ELECTION": "on",
                                       "PULLTRACE_KUBERNETES": "off"})
    assert r.returncode == 2 and "PULLTRACE_LEADER_ELECTION" in r.stderr
    r = run_binary(server_binary, env={"PULLTRACE_LEADER_ELECTION": "sometimes"})
    assert r.returncode == 2 and "PULLTRACE_LEADER_ELECTION" in r.stderr


# -- failover on the real containerd stack ----------------------------------------------------

def pull_on(srv, digest):
    """The pull of that manifest on `srv`, or None (also while it is down)."""
    try:
        return srv.find(lambda p: p["manifestDigest"] == digest)
    except (requests.RequestException, ValueError, KeyError):
        return None


def history_digests(srv, **params):
    """{manifest digest: state} of every pull in `srv`'s history (all pages)."""
    out, cont = {}, None
    while True:
        q = dict(params, limit=1000, **({"continue": cont} if cont else {}))
        r = requests.get(srv.url + "/api/v1/history", params=q, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        for p in body["pulls"]:
            out[p["manifestDigest"]] = p["state"]
        cont = body["metadata"].get("continue")
        if not cont:
            return out


def stalled_alerts(hook, pull_ids):
    """The PullStalled notifications the webhook accepted for these pull ids, in order."""
    return [a for body in hook.snapshot() for a in body
            if a["labels"]["alertname"] == "PullStalled"
            and a["labels"].get("pull") in pull_ids]


@pytest.mark.stack(rate=2 * MIB)
def test_leader_killed_mid_pull_survivor_goes_on_alert_once_history_back(
        stack, kube, cri_available, tmp_path):
    hook = stack.receiver(path=ALERTS_PATH)

    def env(name):
        (tmp_path / name).mkdir()
        # No periodic re-send within the test: every notification is a firing or a
        # resolution.
        return {"PULLTRACE_DATA_DIR": str(tmp_path / name),
                "PULLTRACE_STALL_ALERT_AFTER": "2s", "PULLTRACE_ALERT_RESEND": "1h",
                "PULLTRACE_ALERT_WEBHOOK_URL": hook.endpoint}
    a = replica(stack, kube, "pulltrace-a", **env("a"))
    b = replica(stack, kube, "pulltrace-b", **env("b"))
    name = {id(a): "pulltrace-a", id(b): "pulltrace-b"}
    # One agent, both replicas: the comma-separated form of PULLTRACE_SERVER_URL (two
    # servers on one loopback address and two ports; a headless Service's name resolving to
    # two addresses is covered by the agent's unit tests).
    agent = stack.agent(f"{a.url},{b.url}", node_name=NODE,
                        env={"PULLTRACE_REPORT_INTERVAL": "500ms",
                             "PULLTRACE_STALL_THRESHOLD": "2s"})
    leader = the_leader([a, b])
    survivor = b if leader is a else a

    # A pull that finishes while both run: both have it, in their tables and their history.
    before = stack.images.image("e2e/ha-before", "v1", layers=[1 * MIB, 1 * MIB])
    stack.cri_pull(before)
    for srv in (a, b):
        wait_until(lambda: (pull_on(srv, before.manifest_digest) or {}).get("state") ==
                   "completed", 60, what="the first pull completed on both replicas")
        wait_until(lambda: history_digests(srv).get(before.manifest_digest) == "completed",
                   30, what="the first pull in both histories")
    reporting = [l for l in agent.log_json() if l.get("msg") == "reporting to server"]
    assert {l["url"] for l in reporting} == {a.url + "/api/v1/report",
                                             b.url + "/api/v1/report"}

    # The big pull, for a pod (kubelet's Pulling names it): bytes move on both replicas.
    big = stack.images.image("e2e/ha-big", "v1", layers=[16 * MIB, 16 * MIB, 16 * MIB])
    ref = stack.ref(big)
    pod = kube.add_pod("shop", "web-1", NODE, [("web", ref)])
    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    stack.cri_pull(big, background=True)
    sb = survivor.events()
    sb.wait(lambda e: e["event"] == "snapshot")

    def moving_on(srv):
        p = pull_on(srv, big.manifest_digest)
        return p if p and 0 < p["downloadedBytes"] < big.total_bytes else None
    wait_until(lambda: moving_on(leader) and moving_on(survivor), 60,
               what="bytes moving on both replicas")

    # kill -9 the leader mid-pull: no release, the Lease still names it.
    leader.kill()
    assert holder(kube) == name[id(leader)]
    at_kill = moving_on(survivor)["downloadedBytes"]
    # The pull keeps progressing on the survivor, which the agent keeps reporting to
    # while the dead replica's target backs off.
    wait_until(lambda: (pull_on(survivor, big.manifest_digest) or {}).get(
        "downloadedBytes", 0) > at_kill, 60, what="progress on the survivor")
    wait_until(lambda: any(l.get("msg") == "report failed; retrying with backoff" and
                           l.get("url") == leader.url + "/api/v1/report"
                           for l in agent.log_json()), 30, what="the agent backing off")
    # The survivor takes over once the lease expired.
    wait_until(lambda: is_leader(survivor), 60, what="the survivor leading")
    assert holder(kube) == name[id(survivor)]
    assert survivor.metric("pulltrace_leader") == 1

    # The killed replica restarts on its data dir: a follower now, its history has what it
    # had, and it learns the pull in flight from the agent again.
    leader.start()
    wait_until(lambda: leader.metric("pulltrace_leader") == 0 and
               name[id(survivor)] in next(c["detail"] for c in readyz(leader)["checks"]
                                          if c["name"] == "leader"), 30,
               what="the restarted replica following")
    assert history_digests(leader).get(before.manifest_digest) == "completed"
    wait_until(lambda: moving_on(leader), 60, what="the pull in flight on the restarted replica")

    # An alert after the failover: the registry proxy freezes, the pull stalls on both
    # replicas, both raise PullStalled; only the leader delivers it.
    stack.nginx.freeze()
    try:
        wait_until(lambda: survivor.metric("pulltrace_alert_webhook_deliveries_total",
                                           {"result": "sent"}) == 1, 60,
                   what="the leader delivering the alert")
        wait_until(lambda: leader.metric("pulltrace_alert_webhook_deliveries_total",
                                         {"result": "not_leader"}) == 1, 60,
                   what="the follower raising it and leaving it to the leader")
        ids = {p["id"] for p in (pull_on(a, big.manifest_digest),
                                 pull_on(b, big.manifest_digest))}
        # One firing notification, from the leader.
        delivered = stalled_alerts(hook, ids)
        assert len(delivered) == 1, json.dumps(hook.snapshot())
        assert delivered[0]["labels"]["node"] == NODE
        # The Kubernetes Event on the pull's pod, the other side effect: written by the
        # leader alone; the follower, which correlates the same pod, skips it.
        wait_until(lambda: kube.events_v1_list("shop", "PullStalled"), 60,
                   what="the PullStalled Event on the pod")
        wait_until(lambda: (leader.metric("pulltrace_kube_event_writes_total",
                                          {"result": "skipped"}) or 0) >= 1, 60,
                   what="the follower skipping the Event")
    finally:
        stack.nginx.thaw()
    assert leader.metric("pulltrace_alerts_total", {"severity": "warning"}) == 1
    assert leader.metric("pulltrace_kube_event_writes_total", {"result": "created"}) == 0
    # Counted when the API server's 201 arrives, which may follow the Event's appearance.
    wait_until(lambda: survivor.metric("pulltrace_kube_event_writes_total",
                                       {"result": "created"}) >= 1, 30,
               what="the leader counting the Event it created")
    alert_ev = sb.wait(lambda e: e["event"] == "alert", 30, what="the alert on the stream")
    assert alert_ev["data"]["alert"]["name"] == "PullStalled"

    # Thawed, the pull completes; both histories have both pulls.
    for srv in (leader, survivor):
        wait_until(lambda: (pull_on(srv, big.manifest_digest) or {}).get("state") ==
                   "completed", 120, what="the big pull completed")
        wait_until(lambda: history_digests(srv) == {before.manifest_digest: "completed",
                                                    big.manifest_digest: "completed"}, 30,
                   what="both pulls in the history")
    # The follower's alert history has the alert it raised but did not deliver.
    alerts = requests.get(leader.url + "/api/v1/history/alerts", timeout=10).json()["alerts"]
    assert [x["name"] for x in alerts] == ["PullStalled"]
    # Resumed, the alert resolved: the leader sent it once more, with an endsAt of then
    # (earlier than the firing one's); the follower sent nothing, still.
    wait_until(lambda: len(stalled_alerts(hook, ids)) == 2, 30, what="the resolution")
    firing, resolved = stalled_alerts(hook, ids)
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] < firing["endsAt"]
    assert leader.metric("pulltrace_alert_webhook_deliveries_total", {"result": "sent"}) == 0
    sb.close()
    # One PullStalled Event, created once and never written again (a second replica's write
    # would be a second POST, or a PATCH of its series).
    stalled_events = kube.events_v1_list("shop", "PullStalled")
    assert len(stalled_events) == 1
    name_ = stalled_events[0]["metadata"]["name"]
    writes = [w[0] for w in kube.event_writes
              if (w[0] == "POST" and json.loads(w[3]).get("reason") == "PullStalled")
              or (w[0] == "PATCH" and w[1].endswith("/" + name_))]
    assert writes == ["POST"], writes


@pytest.mark.stack(rate=2 * MIB)
def test_alert_raised_while_nobody_leads_is_delivered_by_the_new_leader(
        stack, kube, cri_available):
    """After a kill -9 nobody delivers until the lease expires. An alert the survivor raises
    in that gap, as a follower, is kept and delivered once it takes over."""
    hook = stack.receiver(path=ALERTS_PATH)
    # A lease long enough for the alert to come before the takeover.
    slow = {"PULLTRACE_LEASE_DURATION": "20s", "PULLTRACE_LEASE_RENEW_DEADLINE": "10s",
            "PULLTRACE_LEASE_RETRY_PERIOD": "1s", "PULLTRACE_STALL_ALERT_AFTER": "2s",
            "PULLTRACE_ALERT_WEBHOOK_URL": hook.endpoint}
    a = replica(stack, kube, "pulltrace-a", **slow)
    b = replica(stack, kube, "pulltrace-b", **slow)
    stack.agent(f"{a.url},{b.url}", node_name=NODE,
                env={"PULLTRACE_REPORT_INTERVAL": "500ms", "PULLTRACE_STALL_THRESHOLD": "2s"})
    leader = the_leader([a, b])
    survivor = b if leader is a else a
    img = stack.images.image("e2e/ha-gap", "v1", layers=[16 * MIB, 16 * MIB])
    stack.cri_pull(img, background=True)
    wait_until(lambda: (pull_on(survivor, img.manifest_digest) or {}).get(
        "downloadedBytes", 0) > 0, 60, what="bytes moving")
    leader.kill()
    stack.nginx.freeze()
    try:
        # Raised by the survivor while it still follows the dead replica's Lease.
        wait_until(lambda: survivor.metric("pulltrace_alert_webhook_deliveries_total",
                                           {"result": "not_leader"}) == 1, 60,
                   what="the alert raised by the follower")
        assert not is_leader(survivor)
        assert hook.snapshot() == []
        wait_until(lambda: is_leader(survivor), 60, what="the takeover")
        wait_until(lambda: survivor.metric("pulltrace_alert_webhook_deliveries_total",
                                           {"result": "sent"}) == 1, 30,
                   what="the kept alert delivered")
    finally:
        stack.nginx.thaw()
    assert survivor.metric("pulltrace_alert_webhook_deliveries_total",
                           {"result": "after_takeover"}) == 1
    pull_id = pull_on(survivor, img.manifest_digest)["id"]
    assert len(stalled_alerts(hook, {pull_id})) == 1, json.dumps(hook.snapshot())
