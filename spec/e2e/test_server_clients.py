"""pulltrace-server keeps running when event-stream clients vanish while it writes to them
(a browser tab closed, a proxy resetting): writing to a socket whose peer is gone must be an
error the server handles, never a SIGPIPE that kills the process. No containerd needed: the
reports come from this test. Nothing here asserts on speed."""
# ctest: TIMEOUT=120

import socket
import struct
import threading
import time

import requests

from harness import Server, reports, wait_until


def report(node, seq, layers=60):
    now = time.time()
    return reports.report(node, seq, pulls=[reports.pull(
        "p1", "127.0.0.1/e2e/" + "x" * 400, "sha256:" + "c" * 64, started=now, layers=[
            reports.layer(reports.sha256(i), 10 ** 9, seq, state="downloading",
                          media_type="m" * 200, started=now, updated=now)
            for i in range(layers)])])


def test_clients_vanishing_mid_write_do_not_kill_the_server(server_binary, tmp_path):
    srv = Server(server_binary, tmp_path / "server.log", env={
        "PULLTRACE_KUBERNETES": "off", "PULLTRACE_REPORT_MIN_INTERVAL": "0",
        "PULLTRACE_LOG_LEVEL": "info"}).start()
    try:
        stop = threading.Event()
        posted = []

        def feed():
            # Reports keep the server writing events while the clients go away.
            seq = 0
            with requests.Session() as sess:
                while not stop.is_set():
                    seq += 1
                    r = srv.post(report("node-a", seq), session=sess, timeout=10)
                    posted.append(r.status_code)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            for rnd in range(5):
                # Clients that subscribe and never read: their socket buffers fill up.
                socks = []
                for _ in range(100):
                    s = socket.create_connection(("127.0.0.1", srv.port))
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: t\r\n\r\n")
                    socks.append(s)
                time.sleep(0.3)
                # They vanish with unread data (the kernel answers the server's next
                # segments with a reset), half of them with an explicit reset.
                for i, s in enumerate(socks):
                    if i % 2:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                time.sleep(0.3)
                assert srv.running(), f"round {rnd}: server died with status {srv.proc.poll()}"
        finally:
            stop.set()
            feeder.join(timeout=15)
        assert posted and set(posted) == {200}, set(posted)
        wait_until(lambda: "pulltrace_sse_clients_active 0" in srv.metrics().text,
                   10, what="every client gone")
        assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200
        assert srv.running()
    finally:
        status, _ = srv.stop()
    assert status == 0, f"exit status {status}"
