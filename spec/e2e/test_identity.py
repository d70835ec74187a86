"""Who may report and who may read (docs/security.md), end to end: the real pulltrace-agent
and pulltrace-server (on the stack's real containerd) with the fake Kubernetes API server
answering TokenReviews and SubjectAccessReviews in the API's real shapes.

Agents (PULLTRACE_AGENT_AUTH=kubernetes): the agent sends its pod's projected
service-account token; the server accepts a report only when the token is the agents'
service account's AND its pod runs on the node the report names. Readers
(PULLTRACE_READ_AUTH=kubernetes): a bearer token allowed to `get pulls.pulltrace.io`.
Nothing here asserts on speed: every wait is for a state, with a generous deadline."""
# ctest: TIMEOUT=600

import os
import uuid

import pytest
import requests

from harness import reports, wait_until

NS, SA = "pulltrace", "pulltrace-agent"
NODE = "e2e-node"
READ = ("get", "pulltrace.io", "pulls")


# -- helpers ---------------------------------------------------------------------------------

def grant_reviews(kube):
    """What the chart's ClusterRole gives the server: create TokenReviews and SARs."""
    kube.allow("create", "authentication.k8s.io", "tokenreviews", user="e2e-user")
    kube.allow("create", "authorization.k8s.io", "subjectaccessreviews", user="e2e-user")


def identity_server(stack, kube, **env):
    full = {"PULLTRACE_KUBECONFIG": str(kube.write_kubeconfig()),
            "PULLTRACE_AGENT_AUTH": "kubernetes",
            "PULLTRACE_AGENT_SERVICE_ACCOUNT": f"{NS}:{SA}",
            "PULLTRACE_SSE_HEARTBEAT": "500ms"}
    full.update(env)
    return stack.server(env=full).wait_kube_ready(20)


def agent_pod(kube, node, name=None):
    """The agent DaemonSet's pod on `node`, as the API server has it."""
    name = name or f"pulltrace-agent-{uuid.uuid4().hex[:5]}"
    kube.add_pod(NS, name, node, [("agent", "ghcr.io/pulltrace/pulltrace:e2e")], phase="Running")
    return name


def write_token(path, token):
    """Replaces the token file at once, as kubelet swaps a projected volume's files."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token)
    os.replace(tmp, path)


def start_agent(stack, srv, token_file, node=NODE, **env):
    full = {"PULLTRACE_AGENT_AUTH": "kubernetes", "PULLTRACE_AGENT_TOKEN_FILE": str(token_file),
            "PULLTRACE_REPORT_INTERVAL": "300ms"}
    full.update(env)
    return stack.agent(srv, node_name=node, env=full)


def running_agent(stack, kube, token=None, **env):
    """The server, and the real agent on NODE sending the token of its own pod (or `token`);
    returns (server, the agent's pod, the token file)."""
    grant_reviews(kube)
    pod = agent_pod(kube, NODE)
    token_file = stack.dir / "agent-token"
    write_token(token_file, token or kube.issue_sa_token(NS, SA, pod=pod))
    srv = identity_server(stack, kube)
    start_agent(stack, srv, token_file, **env)
    return srv, pod, token_file


def nodes(srv):
    r = requests.get(srv.url + "/api/v1/nodes", timeout=5)
    r.raise_for_status()
    return {n["name"]: n for n in r.json()["nodes"]}


def rejected(srv, reason):
    return srv.metric("pulltrace_agent_reports_rejected_total", {"reason": reason}) or 0


def reviewed_tokens(kube):
    with kube.lock:
        return [b["spec"]["token"] for b in kube.reviews["tokenreviews"]]


def a_report(node, seq=1):
    d = reports.sha256(seq)
    return reports.report(node, seq, [reports.pull(f"p{seq}", "127.0.0.1/e2e/app", d,
                                                   [reports.layer(reports.sha256(seq + 100), 10, 5)],
                                                   started=None)])


# -- agents ----------------------------------------------------------------------------------

@pytest.mark.containerd_independent
@pytest.mark.stack(nginx=False)
def test_agent_with_its_nodes_token_reports_and_the_answer_is_cached(stack, kube):
    srv, _, _ = running_agent(stack, kube)

    wait_until(lambda: NODE in nodes(srv), 30, what="the agent's node in /api/v1/nodes")
    wait_until(lambda: (srv.metric("pulltrace_agent_reports_total", {"result": "applied"}) or 0) >= 6,
               30, what="six applied reports")
    # One TokenReview, for the audience of the projected token: the rest came from the cache.
    with kube.lock:
        bodies = list(kube.reviews["tokenreviews"])
    assert len(bodies) == 1
    assert bodies[0]["spec"]["audiences"] == ["pulltrace"]
    assert bodies[0]["apiVersion"] == "authentication.k8s.io/v1"
    assert srv.metric("pulltrace_auth_reviews_total", {"client": "agent", "review": "token"}) == 1
    assert srv.metric("pulltrace_auth_cache_hits_total", {"client": "agent"}) >= 5
    assert rejected(srv, "wrong_node") == 0


@pytest.mark.containerd_independent
@pytest.mark.stack(nginx=False)
@pytest.mark.parametrize("node_claims", [True, False], ids=["node-claim", "pod-lookup"])
def test_token_of_another_node_is_refused_and_nothing_is_applied(stack, kube, node_claims):
    # With node_claims=False the token carries only its pod (API servers before 1.30): the
    # server finds the pod's node in its pod cache.
    grant_reviews(kube)
    other = agent_pod(kube, "node-b")
    mine = agent_pod(kube, NODE)
    token_file = stack.dir / "agent-token"
    write_token(token_file, kube.issue_sa_token(NS, SA, pod=other, node_claims=node_claims))
    srv = identity_server(stack, kube)
    # The agent on e2e-node holding node-b's token (a stolen token, or a bad mount).
    start_agent(stack, srv, token_file)
    wait_until(lambda: rejected(srv, "wrong_node") >= 2, 30, what="refused reports")
    assert NODE not in nodes(srv)

    # The same, by hand: the answer says why, and nothing of the report is applied.
    stolen = kube.issue_sa_token(NS, SA, pod=other, node_claims=node_claims)
    r = srv.post(a_report(NODE), token=stolen)
    assert r.status_code == 403
    body = r.json()
    assert body["field"] == "nodeName"
    assert '"node-b"' in body["error"] and f'"{NODE}"' in body["error"]
    assert srv.pulls() == []
    # Its own node's report passes with the same token.
    assert srv.post(a_report("node-b", seq=7), token=stolen).status_code == 200
    assert [p["node"] for p in srv.pulls()] == ["node-b"]

    # A token of the right node passes.
    good = kube.issue_sa_token(NS, SA, pod=mine, node_claims=node_claims)
    assert srv.post(a_report(NODE, seq=3), token=good).status_code == 200
    assert NODE in nodes(srv)


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_unknown_expired_and_foreign_tokens_are_refused(stack, kube):
    grant_reviews(kube)
    pod = agent_pod(kube, NODE)
    kube.add_pod(NS, "web-1", NODE, [("web", "nginx:1.25")], phase="Running")
    srv = identity_server(stack, kube)
    report = a_report(NODE)

    r = srv.post(report, token=False)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = srv.post(report, token="not-a-token")
    assert r.status_code == 401 and "token lookup failed" in r.json()["error"]
    expired = kube.issue_sa_token(NS, SA, pod=pod, expires_in=-60)
    r = srv.post(report, token=expired)
    assert r.status_code == 401 and "expired" in r.json()["error"]
    wrong_audience = kube.issue_sa_token(NS, SA, pod=pod, audiences=("vault",))
    r = srv.post(report, token=wrong_audience)
    assert r.status_code == 401 and "audience" in r.json()["error"]
    # Another workload's token on the same node: authenticated, but not an agent.
    foreign = kube.issue_sa_token(NS, "default", pod="web-1")
    r = srv.post(report, token=foreign)
    assert r.status_code == 403
    assert f"system:serviceaccount:{NS}:default" in r.json()["error"]
    # A valid token whose pod was deleted (and so revoked by the API server).
    gone = agent_pod(kube, NODE)
    dead = kube.issue_sa_token(NS, SA, pod=gone)
    kube.delete_pod(NS, gone)
    assert srv.post(report, token=dead).status_code == 401

    assert srv.pulls() == []
    assert rejected(srv, "unauthorized") >= 5
    assert rejected(srv, "forbidden") >= 1


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_server_without_review_rights_answers_503_not_401(stack, kube):
    # The chart's RBAC missing: the client must retry, not believe its token bad.
    pod = agent_pod(kube, NODE)
    srv = identity_server(stack, kube)
    r = srv.post(a_report(NODE), token=kube.issue_sa_token(NS, SA, pod=pod))
    assert r.status_code == 503
    assert "Retry-After" in r.headers
    assert "tokenreviews" in r.json()["error"]
    assert rejected(srv, "auth_unavailable") == 1
    assert srv.metric("pulltrace_auth_review_errors_total", {"client": "agent"}) == 1


@pytest.mark.containerd_independent
@pytest.mark.stack(nginx=False)
def test_agent_picks_up_a_rotated_token(stack, kube):
    srv, pod, token_file = running_agent(stack, kube, PULLTRACE_AGENT_TOKEN_REFRESH="500ms")
    wait_until(lambda: NODE in nodes(srv), 30, what="the agent's node")

    # kubelet rotates the token: the agent re-reads the file and sends the new one.
    second = kube.issue_sa_token(NS, SA, pod=pod)
    write_token(token_file, second)
    wait_until(lambda: second in reviewed_tokens(kube), 30, what="a review of the new token")
    applied = srv.metric("pulltrace_agent_reports_total", {"result": "applied"})
    wait_until(lambda: srv.metric("pulltrace_agent_reports_total", {"result": "applied"}) >= applied + 3,
               30, what="reports with the new token")


@pytest.mark.containerd_independent
@pytest.mark.stack(nginx=False)
def test_agent_rereads_its_token_when_refused(stack, kube):
    # A refresh interval far beyond the test: only the 401 makes the agent read again.
    srv, pod, token_file = running_agent(stack, kube, token="stale-token",
                                         PULLTRACE_AGENT_TOKEN_REFRESH="1h")
    wait_until(lambda: rejected(srv, "unauthorized") >= 1, 30, what="a refused report")
    write_token(token_file, kube.issue_sa_token(NS, SA, pod=pod))
    wait_until(lambda: NODE in nodes(srv), 30, what="the agent's node after the new token")


# -- readers ---------------------------------------------------------------------------------

@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_readers_need_a_token_allowed_to_get_pulls(stack, kube):
    grant_reviews(kube)
    kube.add_token("alice-token", "alice")
    kube.add_token("bob-token", "bob")
    kube.allow(*READ, user="alice")
    srv = identity_server(stack, kube, PULLTRACE_AGENT_AUTH="token", PULLTRACE_AGENT_TOKEN="agent-s3cret",
                          PULLTRACE_READ_AUTH="kubernetes")
    assert srv.post(a_report(NODE), token="agent-s3cret").status_code == 200
    api = srv.url + "/api/v1/pulls"

    r = requests.get(api, timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.get(api, headers={"Authorization": "Bearer who-knows"}, timeout=5)
    assert r.status_code == 401
    r = requests.get(api, headers={"Authorization": "Bearer bob-token"}, timeout=5)
    assert r.status_code == 403
    assert "bob may not get pulls.pulltrace.io" in r.json()["error"]
    r = requests.get(api, headers={"Authorization": "Bearer alice-token"}, timeout=5)
    assert r.status_code == 200 and [p["node"] for p in r.json()["pulls"]] == [NODE]
    # A pull's own events likewise.
    events = f"{api}/{r.json()['pulls'][0]['id']}/events"
    assert requests.get(events, timeout=5).status_code == 401
    r = requests.get(events, headers={"Authorization": "Bearer alice-token"}, timeout=5)
    assert r.status_code == 200 and [e["type"] for e in r.json()["events"]] == ["pull.started"]
    # The web UI's cookie works as well as the header.
    r = requests.get(srv.url + "/api/v1/nodes", cookies={"pulltrace_token": "alice-token"}, timeout=5)
    assert r.status_code == 200 and [n["name"] for n in r.json()["nodes"]] == [NODE]

    # The SubjectAccessReview asked what docs/security.md says.
    with kube.lock:
        sars = [b["spec"] for b in kube.reviews["subjectaccessreviews"]]
    assert {"user": "alice", "verb": "get", "group": "pulltrace.io", "resource": "pulls"} in [
        {"user": s["user"], **s["resourceAttributes"]} for s in sars]

    # The event stream too.
    for headers, status in (({}, 401), ({"Authorization": "Bearer bob-token"}, 403)):
        with pytest.raises(AssertionError, match=f"GET /api/v1/events: {status}"):
            srv.events(headers=headers)
    with srv.events(headers={"Authorization": "Bearer alice-token"}) as ev:
        snap = ev.wait(lambda e: e["event"] == "snapshot", what="the snapshot")
        assert [p["node"] for p in snap["data"]["pulls"]] == [NODE]
    # A token not yet cached makes the stream wait for its reviews, then flow.
    kube.add_token("carol-token", "carol")
    kube.allow(*READ, user="carol")
    with srv.events(headers={"Authorization": "Bearer carol-token"}) as ev:
        ev.wait(lambda e: e["event"] == "snapshot", what="carol's snapshot")

    # Health, readiness, metrics and the UI's files need no token.
    assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(srv.url + "/readyz", timeout=5).status_code == 200
    assert requests.get(srv.url + "/", timeout=5).status_code == 200
    m = srv.metrics()
    assert m.value("pulltrace_read_requests_refused_total", {"reason": "unauthenticated"}) >= 2
    assert m.value("pulltrace_read_requests_refused_total", {"reason": "forbidden"}) >= 2
    assert m.value("pulltrace_auth_reviews_total", {"client": "reader", "review": "access"}) >= 2


@pytest.mark.containerd_independent
@pytest.mark.stack(containerd=False, nginx=False)
def test_readers_audience_keeps_cluster_tokens_out(stack, kube):
    # PULLTRACE_READ_AUDIENCE (the chart's readAuth.audience): only tokens made for Pulltrace,
    # which the API server itself would refuse, are accepted; a token of the API server's
    # own audience (a credential for the whole cluster) is not.
    grant_reviews(kube)
    kube.add_token("cluster-token", "alice")
    kube.allow(*READ, user="system:serviceaccount:team:dashboard")
    kube.allow(*READ, user="alice")
    kube.add_pod("team", "dashboard-1", NODE, [("ui", "dashboard:1")], phase="Running")
    srv = identity_server(stack, kube, PULLTRACE_AGENT_AUTH="token",
                          PULLTRACE_READ_AUTH="kubernetes", PULLTRACE_READ_AUDIENCE="pulltrace-reader")
    api = srv.url + "/api/v1/nodes"

    r = requests.get(api, timeout=5)
    assert r.status_code == 401 and "--audience pulltrace-reader" in r.json()["error"]
    r = requests.get(api, headers={"Authorization": "Bearer cluster-token"}, timeout=5)
    assert r.status_code == 401 and "audience" in r.json()["error"]
    made = kube.issue_sa_token("team", "dashboard", pod="dashboard-1", audiences=["pulltrace-reader"])
    r = requests.get(api, headers={"Authorization": f"Bearer {made}"}, timeout=5)
    assert r.status_code == 200
    with kube.lock:
        reviews = [b["spec"] for b in kube.reviews["tokenreviews"]]
    assert reviews and all(s["audiences"] == ["pulltrace-reader"] for s in reviews)
