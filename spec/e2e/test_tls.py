"""TLS on the server's API and report ports with the real agent: the agent reports over
https:// to the report port and verifies the server with the CA in PULLTRACE_SERVER_CA; the certificate rotates while the
agent reports a pull (as cert-manager renews the Secret and kubelet swaps the files), a bad
new pair is refused and the previous one kept, and an agent without the CA reports nothing.
The CA and the certificates are made with openssl in the test. Nothing asserts on speed."""
# ctest: TIMEOUT=300

import os
import socket
import ssl

import pytest
import requests

from harness import wait_until
from harness.pki import CA

TOKEN = "tls-e2e"
KIB = 1024
MIB = 1024 * KIB


def install(src, dst):
    """Replaces dst with a copy of src in one rename, as kubelet swaps a Secret's files."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def served_serial(srv, ca):
    """The serial number of the certificate a new connection to the server gets (verified)."""
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return int(s.getpeercert()["serialNumber"], 16)


def node(srv, name):
    nodes = requests.get(srv.url + "/api/v1/nodes", timeout=5, verify=srv.ca).json()["nodes"]
    return next((n for n in nodes if n["name"] == name), None)


@pytest.mark.stack(rate=256 * KIB)
def test_agent_over_https_while_the_certificate_rotates(stack, server_binary, cri_available):
    if not cri_available:
        pytest.skip("pt-cri-pull not built")
    ca = CA(stack.dir / "pki")
    first, second = ca.issue(), ca.issue()
    tls_dir = stack.dir / "tls"
    tls_dir.mkdir()
    crt, key = tls_dir / "tls.crt", tls_dir / "tls.key"
    install(first[0], crt)
    install(first[1], key)
    # Reports on a port of their own (PULLTRACE_REPORT_ADDR), with the same TLS: the agents
    # below report there.
    srv = stack.server(token=TOKEN, tls=(crt, key, ca.cert), report=True,
                       env={"PULLTRACE_TLS_RELOAD_INTERVAL": "200ms"})
    assert srv.url.startswith("https://") and srv.report_url.startswith("https://")
    assert srv.report_url != srv.url
    assert served_serial(srv, ca) == 1001

    app = stack.images.image("e2e/tls", "v1", layers=[1536 * KIB, 1 * MIB])
    events = srv.events()
    events.wait(lambda e: e["event"] == "snapshot")
    agent_env = {"PULLTRACE_AGENT_TOKEN": TOKEN, "PULLTRACE_REPORT_INTERVAL": "500ms",
                 "PULLTRACE_SERVER_CA": str(ca.cert)}
    stack.agent(srv.report_url, node_name="tls-node", env=agent_env)
    pull = stack.cri_pull(app, background=True)
    events.wait(lambda e: e["event"] == "pull.started" and
                e["data"]["pull"]["manifestDigest"] == app.manifest_digest, timeout=60)

    # Rotation while the agent reports: new connections get the new certificate.
    install(second[0], crt)
    install(second[1], key)
    wait_until(lambda: srv.metric("pulltrace_tls_reloads_total", {"result": "ok"}) == 1, 30,
               what="the rotated pair loaded")
    assert served_serial(srv, ca) == 1002
    seq = node(srv, "tls-node")["seq"]
    wait_until(lambda: node(srv, "tls-node")["seq"] > seq + 2, 30,
               what="reports after the rotation")

    # A bad new pair (the old key with the new certificate) is refused; the pair in use stays.
    install(first[1], key)
    wait_until(lambda: srv.metric("pulltrace_tls_reloads_total", {"result": "error"}) == 1, 30,
               what="the bad pair refused")
    assert served_serial(srv, ca) == 1002
    assert any("keeping the previous pair" in line.get("msg", "") and
               "does not match" in line.get("error", "") for line in srv.log_json())
    install(second[1], key)  # the matching key again: the pair in use, nothing to reload

    # A second agent started now verifies the rotated certificate with the same CA.
    stack.agent(srv.report_url, node_name="tls-node-2", env=agent_env)
    wait_until(lambda: node(srv, "tls-node-2") is not None, 30, what="the second agent's report")

    done = events.wait(lambda e: e["event"] == "pull.completed" and
                       e["data"]["pull"]["manifestDigest"] == app.manifest_digest, timeout=120)
    assert pull.result(timeout=60).returncode == 0
    assert done["data"]["pull"]["downloadedBytes"] == app.total_bytes
    events.close()

    # An agent that does not trust the CA (the system's store) sends nothing.
    errors = srv.metric("pulltrace_tls_errors_total")
    stack.agent(srv.report_url, node_name="untrusting", env={
        "PULLTRACE_AGENT_TOKEN": TOKEN, "PULLTRACE_REPORT_INTERVAL": "500ms"})
    wait_until(lambda: srv.metric("pulltrace_tls_errors_total") > errors, 30,
               what="the untrusting agent's failed handshake")
    assert node(srv, "untrusting") is None
    assert srv.metric("pulltrace_tls_reloads_total", {"result": "ok"}) == 1
