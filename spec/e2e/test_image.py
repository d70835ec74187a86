# ctest: TIMEOUT=1800
"""The stack run from its container image, the way the chart runs it.

The image is built from the root Dockerfile by scripts/images.sh (buildah, no Docker engine;
its cache makes a rerun on the same source tree take a second), pushed to the private
registry with skopeo, pulled by the private containerd through CRI (as kubelet would) and
run with `ctr run` (runc), each with the securityContext, command and (for the agent) the
containerd mount and settings that real Helm renders from the chart:
  - the server as the non-root user 65532 (also the image's own USER), read-only root
    filesystem, no capabilities, default seccomp profile;
  - the agent as uid 0 so that it may open containerd's root-owned socket (which needs no
    capability: root owns the socket), no capabilities, read-only root, default seccomp,
    with containerd's socket *directory* mounted read-only where the chart mounts it.
Both use the host network and listen on free 127.0.0.1 ports. The image's OCI labels name
its source, version (the chart's appVersion), revision (a commit of this repository) and
licence. A real CRI pull then appears in
the containerized server's API with its image, layers and completion, also after containerd
restarts (its socket file is recreated) while the agent's container keeps running.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

import chartlib
import yaml
from chartlib import CHART, Helm, env_of, find, pod_spec
from harness import free_port, wait_until
from harness.containers import DEFAULT_CAPS, Containers, SecurityContext

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
    config = json.loads(config.stdout)["config"]
    labels = config["Labels"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert labels["org.opencontainers.image.version"] == chart["appVersion"]
    assert labels["org.opencontainers.image.source"] == chart["home"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    # The first commit with these sources (a cached image keeps its label), "-dirty" when
    # built from uncommitted changes.
    revision = labels["org.opencontainers.image.revision"].removesuffix("-dirty")
    assert subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{revision}^{{commit}}"],
                          capture_output=True).returncode == 0, labels
    # Non-root by default: a runtime that honours the image's USER alone runs no root daemon.
    assert config["User"] == "65532:65532"
    return out / "pulltrace.tar", labels["org.opencontainers.image.version"]


@pytest.fixture(scope="module")
def chart_pods(build_dir, tmp_path_factory):
    """The server's and the agent's pod specs as real Helm renders the chart (default values;
    containerd's socket named like the stack's, in the default directory)."""
    helm = Helm(chartlib.ensure_helm(build_dir, chartlib.HELMS[0]),
                tmp_path_factory.mktemp("helm"))

    def render(socket_name):
        objects = helm.template(["--set", f"agent.containerdSocket=/run/containerd/{socket_name}"])
        return (pod_spec(find(objects, "Deployment", "-server")),
                find(objects, "DaemonSet", "-agent"), find(objects, "Pod", "-test"))
    return render


def security_of(spec):
    """The chart's pod and container securityContext as the harness's SecurityContext; the
    parts the harness always applies (no capabilities but the added ones, no privilege
    escalation, the runtime's default seccomp profile) must be what the chart asks for."""
    pod = spec.get("securityContext", {})
    container = spec["containers"][0]["securityContext"]
    merged = {**pod, **container}
    assert merged["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["capabilities"]["drop"] == ["ALL"]
    assert container["allowPrivilegeEscalation"] is False
    assert not container.get("privileged", False)
    return SecurityContext(user=f"{merged['runAsUser']}:{merged['runAsGroup']}",
                           read_only_root=container["readOnlyRootFilesystem"],
                           cap_add=container["capabilities"].get("add", []))


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
def test_stack_runs_from_its_image(stack, containers, image_archive, chart_pods):
    archive, tag = image_archive
    server_spec, agent_ds, test_pod = chart_pods(stack.containerd.socket.name)
    agent_spec = pod_spec(agent_ds)
    # The registry as a second, unthrottled source for the image itself.
    stack.containerd.add_plain_http_host(stack.registry.host)
    ref = f"{stack.registry.host}/pulltrace/pulltrace:{tag}"
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci-archive:{archive}", f"docker://{ref}"], check=True, timeout=300)
    stack.cri.pull(ref, timeout=300)

    http_port, metrics_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{http_port}"
    server = containers.run(ref, "pulltrace-server", server_spec["containers"][0]["command"],
                            security=security_of(server_spec), env={
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
    assert server_spec["securityContext"]["runAsNonRoot"] is True
    assert status["Uid"].split()[:2] == ["65532", "65532"]
    assert status["Gid"].split()[:2] == ["65532", "65532"]
    assert set(caps(server).values()) == {0}
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    ui = requests.get(server_url + "/", timeout=5)
    assert ui.status_code == 200 and "<html" in ui.text.lower()  # the embedded web UI
    helm_test(stack, ref, test_pod, server_url)

    node = "image-e2e-node"
    # The chart's mount of containerd's socket directory (a hostPath of the directory), here
    # the stack's containerd's directory; the agent's settings as the chart renders them.
    (host,) = [v for v in agent_spec["volumes"] if "hostPath" in v]
    assert host["hostPath"] == {"path": "/run/containerd", "type": "Directory"}
    (mount,) = [m for m in agent_spec["containers"][0]["volumeMounts"]
                if m["name"] == host["name"]]
    chart_env = env_of(agent_ds)
    agent = containers.run(
        ref, "pulltrace-agent", agent_spec["containers"][0]["command"],
        security=security_of(agent_spec),
        mounts=[(stack.containerd.socket.parent, mount["mountPath"], mount["readOnly"])],
        env={
            "PULLTRACE_NODE_NAME": node,
            "PULLTRACE_SERVER_URL": server_url,
            "PULLTRACE_CONTAINERD_SOCKET": chart_env["PULLTRACE_CONTAINERD_SOCKET"],
            "PULLTRACE_CONTAINERD_NAMESPACE": chart_env["PULLTRACE_CONTAINERD_NAMESPACE"],
            "PULLTRACE_AGENT_AUTH": "token",
            "PULLTRACE_AGENT_TOKEN": TOKEN,
            "PULLTRACE_REPORT_INTERVAL": "500ms",
            "PULLTRACE_COMPLETED_LINGER": "60s",
            "PULLTRACE_LOG_LEVEL": "debug",
        })
    assert mount["readOnly"] is True
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


def helm_test(stack, ref, pod, server_url):
    """The chart's `helm test` pod, its command run from the image (its curl, with the pod's
    flags) under the pod's securityContext, against the containerized server; the Service's
    address is the server's loopback address here."""
    command = pod["spec"]["containers"][0]["command"]
    urls = [a for a in command if a.startswith("http://")]
    assert [u.rsplit("/", 1)[1] for u in urls] == ["healthz", "readyz"]
    command = [server_url + "/" + a.rsplit("/", 1)[1] if a in urls else a for a in command]
    security = security_of(pod["spec"])
    assert security.read_only_root and not security.cap_add
    r = stack.containerd.ctr("run", "--rm", "--net-host", "--read-only", "--seccomp",
                             *[a for cap in DEFAULT_CAPS for a in ("--cap-drop", cap)],
                             ref, "pulltrace-helm-test", *command, check=False, timeout=120)
    assert r.returncode == 0, f"helm test's command failed ({r.returncode}): {r.stdout}{r.stderr}"
    # curl wrote both answers: /healthz's, then /readyz's.
    decoder, text = json.JSONDecoder(), r.stdout.strip()
    health, end = decoder.raw_decode(text)
    ready, _ = decoder.raw_decode(text[end:].lstrip())
    assert health == {"status": "ok"} and ready["status"] == "ready", r.stdout


def _ok(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
