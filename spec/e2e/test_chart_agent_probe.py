"""The agent's readiness probe, as the chart renders it, against a real containerd.

The chart runs `pulltrace-agent --check-containerd` in the agent's container: one
Content/ListStatuses call through the agent's own gRPC client, at the socket path and
namespace the agent uses. Here it says ready while containerd serves, not ready once containerd
is killed (its socket file stays behind, dead: a test for the file alone would still pass) and
ready again when containerd is back with a new socket, while the agent itself keeps running.
"""
# ctest: TIMEOUT=300

import subprocess

import pytest

import chartlib
from chartlib import Helm, env_of, find, pod_spec
from harness import find_binary, wait_until


@pytest.fixture
def rendered_agent(build_dir, tmp_path):
    helm = Helm(chartlib.ensure_helm(build_dir, chartlib.HELMS[0]), tmp_path / "helm")
    return find(helm.template(["--set", "token.value=t"]), "DaemonSet", "-agent")


def probe(build_dir, agent, stack):
    """Runs the rendered probe command with the container's environment, pointed at the
    stack's containerd (the chart's /run/containerd mount is the stack's directory here)."""
    command = pod_spec(agent)["containers"][0]["readinessProbe"]["exec"]["command"]
    assert command[0] == "pulltrace-agent"
    env = {k: v for k, v in env_of(agent).items() if isinstance(v, str)}
    env.update(stack.agent_env("http://127.0.0.1:9"))
    return subprocess.run([str(find_binary("pulltrace-agent", build_dir)), *command[1:]],
                          env=env, capture_output=True, text=True, timeout=30)


def test_readiness_probe_follows_containerd(build_dir, stack, rendered_agent, receiver):
    spec = pod_spec(rendered_agent)["containers"][0]
    assert spec["readinessProbe"]["timeoutSeconds"] > 5      # the check's own call timeout
    assert "livenessProbe" not in spec    # a restart would not bring containerd back
    agent = stack.agent(receiver)
    r = probe(build_dir, rendered_agent, stack)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "answers" in r.stdout

    stack.containerd.kill()
    assert stack.containerd.socket.exists()     # left behind by a killed containerd
    r = probe(build_dir, rendered_agent, stack)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "does not answer" in r.stderr and str(stack.containerd.socket) in r.stderr
    wait_until(lambda: "containerd unreachable" in agent.log(), 30,
               what="the agent to notice containerd is gone")

    stack.containerd.start()
    wait_until(lambda: probe(build_dir, rendered_agent, stack).returncode == 0, 30,
               what="the probe to pass again")
    assert agent.running()
    # The running agent reconnects by itself, without a restart.
    wait_until(lambda: "containerd reachable" in agent.log().split("containerd unreachable")[1],
               60, what="the agent to reach containerd again")
    assert agent.running()
