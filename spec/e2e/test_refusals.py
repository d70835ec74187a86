"""Refusals that arrive: a client still sending its body when pulltrace-server refuses the
request (413 for an oversized body, 401 for a bad token, 429 for a node reporting too often)
receives that answer instead of a connection reset, because the server closes lingeringly
(it shuts down its write side after the answer and keeps reading and dropping what the
client still sends, as nginx's lingering_close). The lingering is bounded: a client that
never stops sending is cut off, by bytes or by time. No containerd needed; nothing here
asserts on speed."""
# ctest: TIMEOUT=180

import json
import socket
import threading
import time

import pytest
import requests

from harness import Server, reports, wait_until
from harness.pki import CA

MIB = 1 << 20


def report(node, seq):
    now = time.time()
    return reports.report(node, seq, pulls=[reports.pull(
        "p1", "127.0.0.1/e2e/app", "sha256:" + "c" * 64, started=now,
        layers=[reports.layer(reports.sha256(1), 10 ** 6, 10, state="downloading",
                              started=now, updated=now)])])


def head(token, length=None, extra=""):
    lines = ["POST /api/v1/report HTTP/1.1", "Host: pulltrace", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def send_then_read(port, data):
    """Writes all of `data` before reading anything (as a simple client does), then reads the
    answer to its end. Returns (status line, body) or raises what the socket raised."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        # A small send buffer, as on a real network: the upload is still under way when
        # the server answers (on loopback the kernel could otherwise swallow it whole).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    status, _, rest = got.partition(b"\r\n")
    return status.decode(), rest.partition(b"\r\n\r\n")[2]


def test_a_refused_client_still_sending_receives_the_answer(server_binary, tmp_path):
    srv = Server(server_binary, tmp_path / "server.log", token="s3cret", env={
        "PULLTRACE_KUBERNETES": "off", "PULLTRACE_REPORT_MIN_INTERVAL": "1h"}).start()
    try:
        body = b"x" * (3 * MIB)

        # 413: the declared length is over PULLTRACE_MAX_BODY (1 MiB); the client writes
        # the whole 3 MiB before it reads (before the lingering close: "broken pipe").
        status, answer = send_then_read(srv.port, head("s3cret", len(body)) + body)
        assert status == "HTTP/1.1 413 Content Too Large"
        assert b"body too large" in answer

        # The same without a Content-Length (chunked): refused when the limit is crossed.
        chunk = b"%x\r\n" % (64 * 1024) + b"y" * (64 * 1024) + b"\r\n"
        status, _ = send_then_read(srv.port, head("s3cret", extra="Transfer-Encoding: chunked\r\n")
                                   + chunk * 48 + b"0\r\n\r\n")
        assert status == "HTTP/1.1 413 Content Too Large"

        # 401: a bad token is refused from the request's head, before the body is read
        # (so before its size is judged), and the answer still arrives.
        status, answer = send_then_read(srv.port, head("wrong", len(body)) + body)
        assert status == "HTTP/1.1 401 Unauthorized"
        assert b"bearer token" in answer

        # 429: the node's burst is used up; the refused request says Connection: close and
        # the client keeps writing after it (a pipelined upload the server will not read).
        with requests.Session() as sess:
            codes = [srv.post(report("node-a", seq), session=sess).status_code
                     for seq in range(1, 13)]
        assert codes[0] == 200 and codes[-1] == 429
        one = json.dumps(report("node-a", 100)).encode()
        status, answer = send_then_read(
            srv.port, head("s3cret", len(one), extra="Connection: close\r\n") + one + body)
        assert status == "HTTP/1.1 429 Too Many Requests"
        assert b"too many reports" in answer

        m = srv.metrics()
        assert m.value("pulltrace_http_lingering_closes_total") >= 4
        assert m.value("pulltrace_http_refused_early_total") == 1
        assert m.value("pulltrace_http_linger_cutoffs_total") == 0
        assert srv.healthy()
    finally:
        srv.stop()


def test_lingering_is_bounded_in_bytes_and_time(server_binary, tmp_path):
    srv = Server(server_binary, tmp_path / "server.log", env={
        "PULLTRACE_KUBERNETES": "off"}).start()
    try:
        # A client that never stops sending: after the 413 the server reads and drops at
        # most 16 MiB, then closes; the client's writes then fail.
        sent = [0]
        failed = threading.Event()

        def flood(s):
            block = b"z" * (256 * 1024)
            try:
                while True:
                    s.sendall(block)
                    sent[0] += len(block)
            except OSError:
                failed.set()

        s = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
        s.sendall(head(None, 1 << 40))
        t = threading.Thread(target=flood, args=(s,), daemon=True)
        t.start()
        assert failed.wait(120), "the server never cut off a client that kept sending"
        # The kernel's buffers hold a few MiB besides what the server dropped.
        assert 16 * MIB < sent[0] < 64 * MIB
        s.close()
        wait_until(lambda: srv.metric("pulltrace_http_linger_cutoffs_total") == 1, 30,
                   what="the byte bound's cutoff in the metrics")

        # A client that trickles forever: cut off by the time bound.
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
        s.sendall(head(None, 1 << 40))
        ended = False
        for _ in range(600):
            try:
                s.sendall(b"z")
            except OSError:
                ended = True
                break
            time.sleep(0.2)
        s.close()
        assert ended, "the server never cut off a client that kept trickling"
        wait_until(lambda: srv.metric("pulltrace_http_linger_cutoffs_total") == 2, 30,
                   what="the time bound's cutoff in the metrics")
        assert srv.healthy()
    finally:
        srv.stop()


def test_reports_have_a_port_of_their_own(server_binary, tmp_path):
    """PULLTRACE_REPORT_ADDR: reports are accepted there only, so that a NetworkPolicy can
    admit only agents to that port. The API port answers a report with 421 naming the report
    port (from the request's head, before the body is uploaded), the report port serves
    nothing but reports and /healthz."""
    srv = Server(server_binary, tmp_path / "server.log", token="s3cret", report=True, env={
        "PULLTRACE_KUBERNETES": "off"}).start()
    try:
        assert srv.report_url != srv.url
        assert srv.post(report("node-a", 1)).status_code == 200
        pulls = requests.get(srv.url + "/api/v1/pulls", timeout=5).json()["pulls"]
        assert [p["node"] for p in pulls] == ["node-a"]

        r = srv.post(report("node-b", 1), url=srv.url)
        assert r.status_code == 421
        port = srv.report_addr.rpartition(":")[2]
        assert f"report port ({port}, PULLTRACE_REPORT_ADDR)" in r.json()["error"]
        # A large report sent to the API port gets the 421, not a reset.
        body = b"x" * (3 * MIB)
        status, answer = send_then_read(srv.port, head("s3cret", len(body)) + body)
        assert status == "HTTP/1.1 421 Misdirected Request"
        assert b"report port" in answer
        pulls = requests.get(srv.url + "/api/v1/pulls", timeout=5).json()["pulls"]
        assert [p["node"] for p in pulls] == ["node-a"]

        # The report port: reports and /healthz only; a wrong token still gets its 401.
        r = requests.get(srv.report_url + "/api/v1/pulls", timeout=5)
        assert r.status_code == 404 and "only agent reports" in r.json()["error"]
        assert requests.get(srv.report_url + "/healthz", timeout=5).status_code == 200
        assert srv.post(report("node-a", 2), token="wrong").status_code == 401

        m = srv.metrics()
        assert m.value("pulltrace_agent_reports_rejected_total", {"reason": "wrong_port"}) == 2
        assert m.value("pulltrace_agent_reports_rejected_total", {"reason": "unauthorized"}) == 1
        assert m.value("pulltrace_http_refused_early_total") == 3
        assert any(line.get("msg") == "listening" and line.get("reportPort") == int(port)
                   for line in srv.log_json())
    finally:
        srv.stop()


def test_a_bad_report_address_is_a_startup_error(server_binary):
    from harness import free_port, run_binary
    r = run_binary(server_binary, env={"PULLTRACE_KUBERNETES": "off",
                                       "PULLTRACE_REPORT_ADDR": "nonsense"})
    assert r.returncode == 2
    assert 'PULLTRACE_REPORT_ADDR: invalid address "nonsense"' in r.stderr
    port = free_port()
    r = run_binary(server_binary, env={"PULLTRACE_KUBERNETES": "off",
                                       "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{port}",
                                       "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{free_port()}",
                                       "PULLTRACE_REPORT_ADDR": f"127.0.0.1:{port}"})
    assert r.returncode == 1
    assert f"PULLTRACE_REPORT_ADDR: cannot listen on 127.0.0.1:{port}: address already in use" \
        in r.stderr


def test_the_report_port_speaks_the_api_ports_tls(server_binary, tmp_path):
    ca = CA(tmp_path / "pki")
    cert, key = ca.issue()
    srv = Server(server_binary, tmp_path / "server.log", token="s3cret", report=True,
                 tls=(cert, key, ca.cert), env={"PULLTRACE_KUBERNETES": "off"}).start()
    try:
        assert srv.report_url.startswith("https://")
        assert srv.post(report("node-a", 1)).status_code == 200
        assert srv.post(report("node-b", 1), url=srv.url).status_code == 421
        # Plain HTTP is not spoken there.
        with pytest.raises(requests.ConnectionError):
            requests.post("http://" + srv.report_addr + "/api/v1/report", timeout=5,
                          json=report("node-c", 1), headers={"Authorization": "Bearer s3cret"})
        wait_until(lambda: srv.metric("pulltrace_tls_errors_total") >= 1, 15,
                   what="the plain-HTTP client's failed handshake")
        nodes = requests.get(srv.url + "/api/v1/nodes", timeout=5, verify=srv.ca).json()["nodes"]
        assert sorted(n["name"] for n in nodes) == ["node-a"]
    finally:
        srv.stop()
