"""Several pulltrace-server replicas (docs/ha.md): leader election on a coordination.k8s.io/v1
Lease in the fake API server (harness/kubeapi.py, the real Lease shapes and semantics), alert
webhooks delivered by the leader only, and agents reporting to every replica.
Nothing here asserts on speed: every wait is for a state, with a generous deadline; the lease
timings are shortened so that expiries happen within the waits."""
# ctest: TIMEOUT=900

import pytest
import requests

from harness import wait_until

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
    # /readyz and the metrics of both say who leads; a follower is ready too.
    r = readyz(other)
    assert r["status"] == "ready" and r["leader"] is False
    check = next(c for c in r["checks"] if c["name"] == "leader")
    assert check["ok"] and name[lead] in check["detail"]
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
