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

from harness import Daemon, free_port, wait_until


def report(node, seq, layers=60):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "schemaVersion": "v1", "nodeName": node, "agentVersion": "e2e", "bootId": "boot-1",
        "seq": seq, "timestamp": ts,
        "pulls": [{
            "id": "p1", "imageRef": "127.0.0.1/e2e/" + "x" * 400,
            "manifestDigest": "sha256:" + "c" * 64, "indexDigest": None,
            "startedAt": ts, "completedAt": None, "totalKnown": True,
            "totalBytes": layers * 10 ** 9, "downloadedBytes": layers * seq,
            "layers": [{"digest": f"sha256:{i:064x}", "mediaType": "m" * 200,
                        "totalBytes": 10 ** 9, "downloadedBytes": seq, "state": "downloading",
                        "startedAt": ts, "updatedAt": ts} for i in range(layers)]}],
        "unattributed": [],
    }


def test_clients_vanishing_mid_write_do_not_kill_the_server(server_binary, tmp_path):
    port, mport = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False
    d = Daemon("pulltrace-server", server_binary, tmp_path / "server.log", env={
        "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{port}", "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{mport}",
        "PULLTRACE_KUBERNETES": "off", "PULLTRACE_REPORT_MIN_INTERVAL": "0",
        "PULLTRACE_LOG_LEVEL": "info"})
    d.start(ready=ready)
    try:
        stop = threading.Event()
        posted = []

        def feed():
            # Reports keep the server writing events while the clients go away.
            seq = 0
            with requests.Session() as sess:
                while not stop.is_set():
                    seq += 1
                    r = sess.post(url + "/api/v1/report", json=report("node-a", seq), timeout=10)
                    posted.append(r.status_code)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            for rnd in range(5):
                # Clients that subscribe and never read: their socket buffers fill up.
                socks = []
                for _ in range(100):
                    s = socket.create_connection(("127.0.0.1", port))
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
                assert d.running(), f"round {rnd}: server died with status {d.proc.poll()}"
        finally:
            stop.set()
            feeder.join(timeout=15)
        assert posted and set(posted) == {200}, set(posted)
        wait_until(lambda: "pulltrace_sse_clients_active 0" in
                   requests.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text,
                   10, what="every client gone")
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert d.running()
    finally:
        status, _ = d.stop()
    assert status == 0, f"exit status {status}"
