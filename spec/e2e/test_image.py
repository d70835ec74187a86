# ctest: TIMEOUT=1800
"""The stack run from its container image, the way the chart runs it.

The image is built from the root Dockerfile by scripts/images.sh (buildah, no Docker engine;
its cache makes a rerun on the same source tree take a second), pushed to the private
registry with skopeo, pulled by the private containerd through CRI (as kubelet would) and
run with `ctr run` (runc):
  - the server as the image's own non-root user, read-only root filesystem, no capabilities,
    default seccomp profile;
  - the agent with the chart's agent securityContext (uid 0 so that it may open containerd's
    root-owned socket, which needs no capability: root owns the socket; no capabilities,
    read-only root, default seccomp) and containerd's socket *directory* mounted read-only.
Both use the host network and listen on free 127.0.0.1 ports. A real CRI pull then appears in
the containerized server's API with its image, layers and completion, also after containerd
restarts (its socket file is recreated) while the agent's container keeps running.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from harness import free_port, wait_until
from harness.containers import Containers, SecurityContext

ROOT = Path(__file__).resolve().parents[2]
KIB = 1024
MIB = 1024 * KIB
TOKEN = "e2e-image-token"


@pytest.fixture(scope="module")
def image_archive(build_dir):
    """(path of the OCI archive, tag): scripts/images.sh's output under the build dir."""
    out = Path(build_dir) / "image"
    log = out / "images.log"
    out.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        r = subprocess.run([str(ROOT / "scripts" / "images.sh"), "build", "--output", str(out)],
                           stdout=f, stderr=subprocess.STDOUT, timeout=1500)
    if r.returncode != 0:
        pytest.fail(f"scripts/images.sh failed ({r.returncode}):\n{log.read_text()[-6000:]}")
    config = subprocess.run(["skopeo", "inspect", "--config",
                             f"oci-archive:{out / 'pulltrace.tar'}"],
                            capture_output=True, text=True, check=True)
    labels = json.loads(config.stdout)["config"]["Labels"]
    return out / "pulltrace.tar", labels["org.opencontainers.image.version"]


@pytest.fixture
def containers(stack):
    c = Containers(stack.containerd, stack.dir / "containers")
    yield c
    c.close()


def api_pull(url, digest):
    try:
        pulls = requests.get(url + "/api/v1/pulls", timeout=2).json()["pulls"]
    except (requests.RequestException, ValueError, KeyError):
        return None
    return next((p for p in pulls if p["manifestDigest"] == digest), None)


def completed_in_api(url, image, timeout=60):
    """The server's pull of `image` (a harness Image) once it is completed."""
    return wait_until(
        lambda: (lambda p: p if p and p["completedAt"] else None)(
            api_pull(url, image.manifest_digest)),
        timeout, interval=0.2, what=f"{image.name} completed in the server's API")


def assert_pull(p, image, node):
    assert p["node"] == node
    assert p["source"] == "agent"
    assert p["state"] == "completed"
    assert p["image"] == f"127.0.0.1/{image.name}"  # containerd's label drops the port
    assert p["totalBytes"] == p["downloadedBytes"] == image.total_bytes
    assert [l["digest"] for l in p["layers"]] == image.manifest.layer_digests
    assert all(l["state"] == "done" for l in p["layers"])
    assert p["layersDone"] == p["layersTotal"] == len(image.layers)


def caps(c):
    s = c.proc_status()
    return {k: int(s[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


@pytest.mark.stack(rate=512 * KIB)
def test_stack_runs_from_its_image(stack, containers, image_archive):
    archive, tag = image_archive
    # The registry as a second, unthrottled source for the image itself.
    stack.containerd.add_plain_http_host(stack.registry.host)
    ref = f"{stack.registry.host}/pulltrace/pulltrace:{tag}"
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci-archive:{archive}", f"docker://{ref}"], check=True, timeout=300)
    stack.cri.pull(ref, timeout=300)

    http_port, metrics_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{http_port}"
    server = containers.run(ref, "pulltrace-server", ["pulltrace-server"], env={
        "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        "PULLTRACE_AGENT_TOKEN": TOKEN,
        "PULLTRACE_KUBERNETES": "off",
        "PULLTRACE_LOG_LEVEL": "debug",
    })
    wait_until(lambda: _ok(server_url + "/readyz"), 30,
               what=f"the server's /readyz (log: {containers.log(server)[-2000:]})")
    # The chart's server securityContext, as the kernel sees the process.
    status = server.proc_status()
    assert status["Uid"].split()[:2] == ["65532", "65532"]
    assert status["Gid"].split()[:2] == ["65532", "65532"]
    assert set(caps(server).values()) == {0}
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    ui = requests.get(server_url + "/", timeout=5)
    assert ui.status_code == 200 and "<html" in ui.text.lower()  # the embedded web UI

    node = "image-e2e-node"
    sock_dir = stack.containerd.socket.parent
    agent = containers.run(
        ref, "pulltrace-agent", ["pulltrace-agent"],
        security=SecurityContext(user="0:0"),
        mounts=[(sock_dir, "/run/containerd", True)],
        env={
            "PULLTRACE_NODE_NAME": node,
            "PULLTRACE_SERVER_URL": server_url,
            "PULLTRACE_CONTAINERD_SOCKET": f"/run/containerd/{stack.containerd.socket.name}",
            "PULLTRACE_CONTAINERD_NAMESPACE": stack.containerd.namespace,
            "PULLTRACE_AGENT_TOKEN": TOKEN,
            "PULLTRACE_REPORT_INTERVAL": "500ms",
            "PULLTRACE_COMPLETED_LINGER": "60s",
            "PULLTRACE_LOG_LEVEL": "debug",
        })
    status = agent.proc_status()
    assert status["Uid"].split()[:2] == ["0", "0"]
    assert set(caps(agent).values()) == {0}
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"

    def node_ok():
        nodes = requests.get(server_url + "/api/v1/nodes", timeout=2).json()["nodes"]
        return any(n["name"] == node and n["state"] == "ok" for n in nodes)
    wait_until(node_ok, 30, interval=0.2,
               what=f"the agent's reports (agent log: {containers.log(agent)[-2000:]})")

    first = stack.images.image("e2e/image-first", "v1", layers=[MIB, MIB])
    stack.cri_pull(first, timeout=120)
    assert_pull(completed_in_api(server_url, first), first, node)

    # containerd restarts: its socket file is removed and created anew in the mounted
    # directory. The agent's container is neither restarted nor told.
    before = os.stat(stack.containerd.socket).st_ino
    stack.containerd.restart(down_for=1.0)
    assert os.stat(stack.containerd.socket).st_ino != before
    assert containers.task_pid(agent.id) == agent.pid and agent.alive()
    wait_until(lambda: containers.log(agent).count("containerd reachable") >= 2, 30,
               what=f"the agent reconnecting (agent log: {containers.log(agent)[-2000:]})")

    second = stack.images.image("e2e/image-second", "v1", layers=[MIB, MIB])
    stack.cri_pull(second, timeout=120)
    assert_pull(completed_in_api(server_url, second), second, node)
    assert containers.task_pid(agent.id) == agent.pid
    assert containers.task_pid(server.id) == server.pid

    for c in (agent, server):
        containers.stop(c)


def _ok(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
