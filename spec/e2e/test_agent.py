# ctest: CONTAINERD=1.7 2.1
"""pulltrace-agent against a real containerd, registry and throttling nginx.

Each test asserts on what an operator would see in the agent's reports. ctest also runs the
file against containerd 1.7 and 2.1 (e2e.agent.containerd-<series>), without the tests whose
outcome does not depend on containerd (marked `containerd_independent`). Durations are chosen
so that pulls last a few seconds at the throttled rate; nothing here asserts on speed.
"""

import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from harness import find_pull, wait_until
from harness.containerd import containerd_bin_dir, containerd_version

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas" /
                     "report-v1.json").read_text())

INTERVAL = 0.5
KIB = 1024
MIB = 1024 * 1024


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def reports_with(receiver, digest):
    return [r for r in receiver.snapshot() if find_pull(r, manifest_digest=digest)]


def start_agent(stack, receiver, **env):
    full = {"PULLTRACE_REPORT_INTERVAL": f"{int(INTERVAL * 1000)}ms",
            "PULLTRACE_STALL_THRESHOLD": "2s", "PULLTRACE_COMPLETED_LINGER": "30s"}
    full.update(env)
    return stack.agent(receiver, env=full)


@pytest.mark.stack(rate=512 * KIB)
def test_pull_with_cached_layer_is_tracked_to_completion(stack, receiver):
    shared = stack.images.layer(256 * KIB)
    base = stack.images.image("e2e/base", "v1", layers=[shared])
    app = stack.images.image("e2e/app", "v1", layers=[shared, 1536 * KIB, 2 * MIB])
    stack.cri_pull(base)  # the shared layer is now on the node

    agent = start_agent(stack, receiver)
    receiver.wait_count(2)
    pull = stack.cri_pull(app, background=True)

    first = receiver.wait_for(lambda r: find_pull(r, manifest_digest=app.manifest_digest),
                              timeout=30, what="the app pull")
    p = find_pull(first, manifest_digest=app.manifest_digest)
    # Everything is known from the first report that names the manifest.
    assert p["imageRef"] == f"127.0.0.1/{app.name}"  # containerd's label drops the port
    assert p["totalKnown"] is True
    assert p["totalBytes"] == app.total_bytes
    assert [l["digest"] for l in p["layers"]] == app.manifest.layer_digests
    assert p["indexDigest"] is None
    assert p["completedAt"] is None
    by_digest = {l["digest"]: l for l in p["layers"]}
    assert by_digest[shared.digest]["state"] == "cached"
    assert by_digest[shared.digest]["downloadedBytes"] == shared.size
    for layer in app.layers[1:]:
        assert by_digest[layer.digest]["totalBytes"] == layer.size
        assert by_digest[layer.digest]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    # It appeared within two intervals of the pull's first visible step.
    assert ts(first["timestamp"]) - ts(p["startedAt"]) <= 2 * INTERVAL + 1.0

    assert pull.result(timeout=120).returncode == 0
    done = receiver.wait_for(
        lambda r: (find_pull(r, manifest_digest=app.manifest_digest) or {}).get("completedAt"),
        timeout=15, what="completion")
    p = find_pull(done, manifest_digest=app.manifest_digest)
    assert p["downloadedBytes"] == p["totalBytes"] == app.total_bytes
    states = {l["digest"]: l["state"] for l in p["layers"]}
    assert states[shared.digest] == "cached"
    assert all(states[l.digest] == "done" for l in app.layers[1:])
    assert ts(p["completedAt"]) >= ts(p["startedAt"])

    # Progress never goes backwards, and some report showed it mid-way.
    seen = [find_pull(r, manifest_digest=app.manifest_digest)["downloadedBytes"]
            for r in reports_with(receiver, app.manifest_digest)]
    assert seen == sorted(seen)
    assert any(shared.size < d < app.total_bytes for d in seen), seen
    states_seen = {l["state"] for r in reports_with(receiver, app.manifest_digest)
                   for l in find_pull(r, manifest_digest=app.manifest_digest)["layers"]}
    assert "downloading" in states_seen

    # Every report the agent sent matches the published JSON Schema.
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for r in receiver.snapshot():
        validator.validate(r)
    last = receiver.snapshot()[-1]
    assert last["schemaVersion"] == "v1"
    assert last["nodeName"] == "e2e-node"
    seqs = [r["seq"] for r in receiver.snapshot()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert len({r["bootId"] for r in receiver.snapshot()}) == 1
    assert agent.running()


@pytest.mark.stack(rate=512 * KIB)
def test_removed_and_pulled_again_is_a_new_pull(stack, receiver):
    img = stack.images.image("e2e/again", "v1", layers=[MIB, 512 * KIB])
    start_agent(stack, receiver)
    stack.cri_pull(img)
    first = receiver.wait_for(
        lambda r: (find_pull(r, manifest_digest=img.manifest_digest) or {}).get("completedAt"),
        timeout=30, what="first completion")
    first_id = find_pull(first, manifest_digest=img.manifest_digest)["id"]
    stack.cri_remove(img)
    n = len(receiver.snapshot())
    stack.cri_pull(img)

    def second_done(r):
        return any(p["manifestDigest"] == img.manifest_digest and p["id"] != first_id
                   and p["completedAt"] for p in r["pulls"])
    rep = receiver.wait_for(second_done, start=n, timeout=30, what="the second pull completed")
    second = [p for p in rep["pulls"] if p["id"] != first_id and
              p["manifestDigest"] == img.manifest_digest][0]
    assert second["downloadedBytes"] == second["totalBytes"] == img.total_bytes
    assert ts(second["startedAt"]) > ts(find_pull(first, manifest_digest=img.manifest_digest)
                                        ["completedAt"])
    assert all(layer["state"] == "done" for layer in second["layers"])


@pytest.mark.stack(rate=256 * KIB)
def test_multi_arch_index_resolves_to_the_platform_manifest(stack, receiver):
    # With attestation manifests, as BuildKit builds images: containerd labels the index
    # with every child (m.0 ... m.3), fetched or not, and CRI fetches only the platform's.
    img = stack.images.index("e2e/multi", "v2",
                             platforms={"amd64": [768 * KIB, 512 * KIB],
                                        "arm64": [256 * KIB]}, attestations=True)
    start_agent(stack, receiver)
    stack.cri_pull(img, background=True)
    amd64 = img.for_arch("amd64")
    rep = receiver.wait_for(lambda r: find_pull(r, manifest_digest=amd64.digest), timeout=30,
                            what="the amd64 pull")
    p = find_pull(rep, manifest_digest=amd64.digest)
    assert p["indexDigest"] == img.index_digest
    assert p["totalBytes"] == amd64.total_bytes
    assert p["imageRef"] == f"127.0.0.1/{img.name}"
    done = receiver.wait_for(
        lambda r: (find_pull(r, manifest_digest=amd64.digest) or {}).get("completedAt"),
        timeout=60, what="completion")
    # No other manifest of the index (the other platform, the attestations) is reported as
    # a pull.
    others = [m.digest for m in img.manifests if m.digest != amd64.digest]
    assert len(others) == 3
    assert not any(find_pull(r, manifest_digest=d) for r in receiver.snapshot() for d in others)
    assert find_pull(done, manifest_digest=amd64.digest)["downloadedBytes"] == amd64.total_bytes


@pytest.mark.stack(rate=512 * KIB)
def test_attestations_of_an_all_platforms_pull_stay_unattributed(stack, receiver):
    """containerd's own client with --all-platforms fetches the attestation manifests too;
    2.x names their in-toto blobs' ingests `attestation-sha256:...` (1.x `unknown-`) and
    labels the manifests `gc.ref.content.<i>`, not `l.<i>`. Each platform is a pull; the
    statements are never layers of a pull, only unattributed ingests while in flight."""
    # At 512 KiB/s every blob here takes seconds: several reports see it in flight (nginx
    # sends the first second's worth of a response at once).
    statement = 2 * MIB
    img = stack.images.index("e2e/attested", "v1",
                             platforms={"amd64": [1536 * KIB], "arm64": [MIB + 512 * KIB]},
                             attestations=True, statement_bytes=statement)
    platforms = [m for m in img.manifests if m.architecture != "unknown"]
    statements = {m.layers[0].digest for m in img.manifests if m.architecture == "unknown"}
    assert len(platforms) == 2 and len(statements) == 2
    start_agent(stack, receiver)
    receiver.wait_count(2)
    argv = stack.containerd.ctr_argv("content", "fetch", "--plain-http", "--all-platforms",
                                     stack.ref(img))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    done = receiver.wait_for(
        lambda rep: all((find_pull(rep, manifest_digest=m.digest) or {}).get("completedAt")
                        for m in platforms),
        timeout=30, what="both platforms completed")
    for m in platforms:
        p = find_pull(done, manifest_digest=m.digest)
        assert p["indexDigest"] == img.index_digest
        assert p["downloadedBytes"] == p["totalBytes"] == m.total_bytes
    reports = receiver.snapshot()
    kind = "attestation" if stack.containerd.version >= (2, 0) else "unknown"
    seen = {u["digest"]: u for rep in reports for u in rep["unattributed"]
            if u["digest"] in statements}
    assert seen, "no report showed an attestation statement in flight"
    assert {u["kind"] for u in seen.values()} == {kind}
    assert all(u["ref"].startswith(f"{kind}-sha256:") for u in seen.values())
    attestation_manifests = {m.digest for m in img.manifests if m.architecture == "unknown"}
    for rep in reports:
        for p in rep["pulls"]:
            assert p["manifestDigest"] not in attestation_manifests
            assert not statements & {l["digest"] for l in p["layers"]}


@pytest.fixture
def parallel_chunks():
    """Skips unless the containerd under test can fetch one layer in parallel chunks."""
    version = containerd_version(containerd_bin_dir())
    if version < (2, 1):
        pytest.skip(f"containerd {'.'.join(map(str, version))} fetches a layer in one request")


@pytest.mark.stack(rate=512 * KIB, layer_chunk=MIB)
def test_a_layer_fetched_in_parallel_chunks_progresses_and_completes(parallel_chunks, stack,
                                                                      receiver):
    # containerd 2.1 with concurrent_layer_fetch_buffer set (as some distributions ship it)
    # downloads ranges of one layer over several connections and writes them in order, so
    # the ingest's offset moves in bursts.
    img = stack.images.image("e2e/chunked", "v1", layers=[6 * MIB, 256 * KIB])
    big = img.layers[0]
    start_agent(stack, receiver, PULLTRACE_STALL_THRESHOLD="10s")
    receiver.wait_count(2)
    pull = stack.cri_pull(img, background=True)
    done = receiver.wait_for(
        lambda r: (find_pull(r, manifest_digest=img.manifest_digest) or {}).get("completedAt"),
        timeout=90, what="completion")
    assert pull.result(timeout=60).returncode == 0
    ranges = stack.nginx.requests_for(rf"GET /v2/{img.name}/blobs/{big.digest} .* 206 ")
    assert len(ranges) > 1, stack.nginx.requests_for(big.digest)
    p = find_pull(done, manifest_digest=img.manifest_digest)
    assert p["downloadedBytes"] == p["totalBytes"] == img.total_bytes
    assert all(l["state"] == "done" for l in p["layers"])
    seen = [find_pull(r, manifest_digest=img.manifest_digest)["layers"][0]["downloadedBytes"]
            for r in reports_with(receiver, img.manifest_digest)]
    assert seen == sorted(seen)
    assert all(d <= big.size for d in seen)
    assert any(0 < d < big.size for d in seen), seen


@pytest.fixture(params=["kill", "freeze"])
def stuck_how(request):
    return request


@pytest.mark.stack(rate=MIB)
def test_a_stuck_registry_leaves_stalled_layers(stack, receiver, stuck_how):
    request = stuck_how
    # containerd moves an ingest's offset in 1 MiB steps: at 1 MiB/s a healthy layer moves
    # every second, well inside the 3 s threshold, so a stall here is the registry's doing.
    img = stack.images.image("e2e/stall", "v1", layers=[8 * MIB, 6 * MIB])
    start_agent(stack, receiver, PULLTRACE_STALL_THRESHOLD="3s")
    handle = stack.cri_pull(img, background=True)
    def layers(r):
        return (find_pull(r, manifest_digest=img.manifest_digest) or {}).get("layers", [])

    moving = receiver.wait_for(
        lambda r: any(l["state"] == "downloading" and l["downloadedBytes"] > 0
                      for l in layers(r)),
        timeout=30, what="bytes moving")
    moved = {l["digest"] for l in layers(moving) if l["downloadedBytes"] > 0}
    # Two ways a pull gets stuck: a registry connection that hangs (the ingest stays,
    # frozen) and one that breaks (containerd drops the partial ingest). Both must show.
    if request.param == "freeze":
        stack.nginx.freeze()
    else:
        stack.nginx.kill()
    # The layer that was moving ends up stalled, still showing the bytes it had.
    rep = receiver.wait_for(
        lambda r: any(l["state"] == "stalled" and l["digest"] in moved for l in layers(r)),
        timeout=30, what="the moving layer stalled")
    p = find_pull(rep, manifest_digest=img.manifest_digest)
    assert p["completedAt"] is None
    assert p["downloadedBytes"] < p["totalBytes"]
    stalled = [l for l in p["layers"] if l["state"] == "stalled"]
    assert all(l["updatedAt"] and l["startedAt"] for l in stalled)
    assert all(l["downloadedBytes"] > 0 for l in stalled if l["digest"] in moved)
    if request.param == "freeze":
        stack.nginx.thaw()
    handle.stop()


@pytest.mark.stack(rate=512 * KIB)
def test_agent_survives_a_containerd_restart(stack, receiver):
    agent = start_agent(stack, receiver)
    receiver.wait_count(2)
    stack.containerd.restart(down_for=2.0)
    wait_until(lambda: "containerd unreachable" in agent.log(), 20, what="outage logged")
    wait_until(lambda: agent.log().count("containerd reachable") >= 2, 30,
               what="reconnection logged")
    # The outage is logged once, not once per tick.
    assert agent.log().count("containerd unreachable") == 1
    img = stack.images.image("e2e/after-restart", "v1", layers=[MIB, MIB])
    stack.cri_pull(img, background=True)
    receiver.wait_for(lambda r: (find_pull(r, manifest_digest=img.manifest_digest) or {})
                      .get("completedAt"), timeout=60, what="a pull after the restart")
    assert agent.running()


@pytest.mark.stack(containerd=False, nginx=False)
def test_containerd_absent_at_start_then_appears(stack, receiver):
    agent = start_agent(stack, receiver)
    # Reports still flow (empty) while containerd is away.
    receiver.wait_count(2, timeout=15)
    assert "containerd unreachable" in agent.log()
    stack.containerd.start()
    stack.started.append(stack.containerd)
    wait_until(lambda: "containerd reachable" in agent.log(), 30, what="containerd found")


@pytest.mark.stack(containerd=True, nginx=False)
@pytest.mark.containerd_independent
def test_the_server_shows_a_node_whose_containerd_is_down(stack):
    """containerd stops under a running agent: the real server's node says so (with gRPC's
    error) and its gauge counts it, while the node itself stays ok; both clear when
    containerd is back, without restarting the agent."""
    srv = stack.server(env={"PULLTRACE_KUBERNETES": "off"})
    agent = start_agent(stack, srv)

    def node():
        nodes = srv.list_all("nodes")
        return nodes[0] if nodes else None

    def containerd_is(reachable):
        n = node()
        return n if n and n["containerd"]["reachable"] is reachable else None

    up = wait_until(lambda: containerd_is(True), 20, what="the node, containerd reachable")
    assert up["containerd"] == {"reachable": True, "since": None, "error": None}
    assert srv.metric("pulltrace_nodes_containerd_unreachable") == 0

    stack.containerd.stop()
    down = wait_until(lambda: containerd_is(False), 30, what="the node, containerd unreachable")
    assert down["state"] == "ok"
    assert down["containerd"]["error"].startswith("gRPC code 14: "), down["containerd"]
    assert ts(down["containerd"]["since"]) <= ts(down["lastReportAt"])
    assert srv.metric("pulltrace_nodes_containerd_unreachable") == 1
    # The agent keeps reporting meanwhile: the node does not go lagging.
    seq = down["seq"]
    later = wait_until(lambda: (n := node())["seq"] > seq + 2 and n, 30, what="reports during the outage")
    # since stays the first failure; error is the last one's (gRPC's words change as the
    # socket goes away).
    assert later["state"] == "ok" and later["containerd"]["reachable"] is False
    assert later["containerd"]["since"] == down["containerd"]["since"]
    assert later["containerd"]["error"].startswith("gRPC code 14: ")

    stack.containerd.start()
    back = wait_until(lambda: containerd_is(True), 30, what="the node, containerd reachable again")
    assert back["containerd"] == {"reachable": True, "since": None, "error": None}
    assert srv.metric("pulltrace_nodes_containerd_unreachable") == 0
    assert agent.running()


@pytest.mark.stack(containerd=True, nginx=False)
@pytest.mark.containerd_independent
def test_backoff_while_the_server_fails_and_recovery(stack, receiver):
    receiver.fail(503)
    agent = start_agent(stack, receiver, PULLTRACE_REPORT_INTERVAL="200ms")
    time.sleep(6)
    attempts = len(receiver.attempts)
    # 30 ticks in 6 s; with exponential backoff only a handful of requests reach the server.
    assert 2 <= attempts <= 10, attempts
    assert agent.log().count("report failed") == 1  # logged on the change only
    receiver.recover()
    wait_until(lambda: len(receiver.reports) >= 3, 40, what="reports after recovery")
    assert agent.running()


@pytest.mark.stack(containerd=True, nginx=False)
@pytest.mark.containerd_independent
def test_token_is_sent_and_sigterm_exits_cleanly(stack, build_dir):
    receiver = stack.receiver(token="s3cret")
    agent = start_agent(stack, receiver, PULLTRACE_AGENT_TOKEN="s3cret")
    receiver.wait_count(2)
    assert all(a.status == 200 for a in receiver.attempts)
    status, _took = agent.stop(timeout=5)
    assert status == 0  # exited by itself on SIGTERM, not SIGKILLed after the deadline
    assert '"msg":"stopped"' in agent.log()


@pytest.mark.containerd_independent
def test_config_errors_name_the_variable(build_dir):
    binary = os.path.join(build_dir, "pulltrace-agent")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "PULLTRACE_NODE_NAME" in r.stderr
    env.update(PULLTRACE_NODE_NAME="n", PULLTRACE_SERVER_URL="http://127.0.0.1:1",
               PULLTRACE_REPORT_INTERVAL="fast")
    r = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "PULLTRACE_REPORT_INTERVAL" in r.stderr and "fast" in r.stderr
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for var in ("PULLTRACE_NODE_NAME", "PULLTRACE_SERVER_URL", "PULLTRACE_CONTAINERD_SOCKET",
                "PULLTRACE_REPORT_INTERVAL", "PULLTRACE_CONTAINERD_NAMESPACE"):
        assert var in r.stdout
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("pulltrace-agent ")
