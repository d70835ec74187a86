"""The e2e harness itself: each real component starts, works and stops as the agent's tests
expect. Fast tests only (a few seconds each)."""

import json
import signal
import subprocess
import time

import pytest
import requests

from harness import Daemon, HarnessError, ReportReceiver, find_pull, wait_until
from harness.images import MT_INDEX, MT_MANIFEST


def test_containerd_boots_privately_with_cri(stack):
    c = stack.containerd
    assert c.running()
    assert str(c.socket).startswith(str(stack.dir))
    plugins = c.ctr("plugins", "ls").stdout
    cri = [line.split() for line in plugins.splitlines() if " cri " in f" {line} "]
    assert cri and cri[0][-1] == "ok", plugins
    for disabled in ("aufs", "btrfs", "zfs", "devmapper"):
        assert f" {disabled} " not in plugins
    hosts = (c.certs_dir / stack.pull_host / "hosts.toml").read_text()
    assert f'server = "http://{stack.pull_host}"' in hosts
    assert 'capabilities = ["pull", "resolve"]' in hosts
    # The daemon's own files are all under the stack's directory.
    cfg = c.config_path.read_text()
    for key in ("root", "state"):
        assert f'{key} = "{stack.dir}' in cfg


def test_containerd_restart_keeps_content(stack):
    img = stack.images.image("harness/restart", layers=[64 << 10])
    r = stack.ctr_pull(img)
    assert r.returncode == 0, r.stderr
    before = stack.containerd.content_digests()
    pid = stack.containerd.pid
    assert stack.containerd.stop() == 0
    assert not stack.containerd.running()
    with pytest.raises(HarnessError):
        stack.containerd.ctr("version")
    stack.containerd.start()
    assert stack.containerd.pid != pid
    assert stack.containerd.content_digests() == before
    assert img.layers[0].digest in before


@pytest.mark.stack(containerd=False)
def test_image_push_digests_and_shared_layer(stack):
    b = stack.images
    shared = b.layer(200 << 10)
    first = b.image("harness/base", tag="v1", layers=[shared, 100 << 10])
    second = b.image("harness/app", tag="v2", layers=[shared, 300 << 10, 50 << 10])
    assert second.layers[0].digest == shared.digest == first.layers[0].digest
    assert len({lay.digest for lay in first.layers + second.layers}) == 4
    for img in (first, second):
        digest, body, ctype = stack.registry.manifest(img.name, img.tag)
        assert digest == img.manifest_digest
        assert ctype == MT_MANIFEST
        m = json.loads(body)
        assert [(lay["digest"], lay["size"]) for lay in m["layers"]] == \
            [(lay.digest, lay.size) for lay in img.layers]
        assert m["config"]["digest"] == img.manifest.config_digest
        assert img.total_bytes == sum(lay["size"] for lay in m["layers"])
        for lay in img.layers:
            assert stack.registry.has_blob(img.name, lay.digest)
    # Sizes are what was asked for, plus tar and gzip overhead only (random data).
    assert 300 << 10 < second.layers[1].size < (300 << 10) + 8192
    # Through nginx, the blob is byte-identical.
    r = requests.get(f"{stack.nginx.url}/v2/harness/app/blobs/{shared.digest}", timeout=10)
    assert r.status_code == 200 and r.content == shared.path.read_bytes()


def test_pull_through_nginx_completes(stack):
    img = stack.images.image("harness/pull", layers=[512 << 10, 256 << 10, 128 << 10])
    r = stack.ctr_pull(img)
    assert r.returncode == 0, r.stderr
    assert img.ref(stack.pull_host) in stack.containerd.image_names()
    content = stack.containerd.content_digests()
    for d in [img.manifest_digest, img.manifest.config_digest, *img.manifest.layer_digests]:
        assert d in content
    # It went through nginx, not straight to the registry.
    for lay in img.layers:
        assert stack.nginx.requests_for(f"GET /v2/harness/pull/blobs/{lay.digest}")


def test_index_pushed_with_all_and_pulled_for_amd64(stack):
    img = stack.images.index("harness/multi", tag="1.0",
                             platforms={"amd64": [256 << 10, 64 << 10],
                                        "arm64": [200 << 10, 32 << 10]})
    digest, body, ctype = stack.registry.manifest(img.name, img.tag)
    assert digest == img.index_digest and ctype == MT_INDEX
    idx = json.loads(body)
    assert {(m["platform"]["architecture"], m["digest"]) for m in idx["manifests"]} == \
        {("amd64", img.for_arch("amd64").digest), ("arm64", img.for_arch("arm64").digest)}
    for m in img.manifests:  # --all pushed both platforms
        d, _, _ = stack.registry.manifest(img.name, m.digest)
        assert d == m.digest
        for lay in m.layers:
            assert stack.registry.has_blob(img.name, lay.digest)
    r = stack.ctr_pull(img)
    assert r.returncode == 0, r.stderr
    content = stack.containerd.content_digests()
    assert img.index_digest in content
    assert set(img.for_arch("amd64").layer_digests) <= content
    assert not set(img.for_arch("arm64").layer_digests) & content


@pytest.mark.stack(rate=1 << 20)
def test_nginx_throttles_per_connection(stack):
    img = stack.images.image("harness/slow", layers=[1536 << 10])
    url = f"{stack.nginx.url}/v2/harness/slow/blobs/{img.layers[0].digest}"
    t0 = time.monotonic()
    r = requests.get(url, timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 200 and len(r.content) == img.layers[0].size
    assert took > 0.4, f"1.5 MiB at 1 MiB/s took only {took:.2f}s"
    t0 = time.monotonic()
    direct = requests.get(f"{stack.registry.url}/v2/harness/slow/blobs/{img.layers[0].digest}",
                          timeout=30)
    assert direct.status_code == 200 and time.monotonic() - t0 < took / 2


def _start_pull(stack, how, img):
    if how == "ctr":
        return stack.ctr_pull(img, background=True)
    return stack.cri_pull(img, background=True, timeout=120)


@pytest.mark.stack(rate=512 << 10)
@pytest.mark.parametrize("how", ["ctr", "cri"])
def test_killing_nginx_fails_a_pull(stack, how, request):
    if how == "cri":
        request.getfixturevalue("cri_available")
    img = stack.images.image(f"harness/kill-{how}", layers=[3 << 20])
    layer_ref = f"layer-{img.layers[0].digest}"
    pull = _start_pull(stack, how, img)
    wait_until(lambda: layer_ref in stack.containerd.active_ingests(), 15,
               what="the layer ingest to appear")
    stack.nginx.kill()
    assert not stack.nginx.running()
    assert pull.wait(timeout=30) != 0
    assert img.layers[0].digest not in stack.containerd.content_digests()
    # containerd drops the failed pull's ingest with the client's lease (a new pull
    # starts over), so a broken pull does not linger as an active ingest.
    wait_until(lambda: layer_ref not in stack.containerd.active_ingests(), 10,
               what="the failed ingest to be collected")
    stack.nginx.restart(rate=0)
    pull = _start_pull(stack, how, img)
    assert pull.wait(timeout=60) == 0
    assert img.layers[0].digest in stack.containerd.content_digests()


@pytest.mark.stack(rate=1 << 20)
def test_frozen_nginx_stalls_the_ingest_until_thawed(stack):
    img = stack.images.image("harness/freeze", layers=[4 << 20])
    layer_ref = f"layer-{img.layers[0].digest}"
    pull = stack.ctr_pull(img, background=True)
    wait_until(lambda: stack.containerd.ingest_offsets().get(layer_ref, 0) >= 1 << 20, 15,
               what="the first MiB of the layer")
    stack.nginx.freeze()
    try:
        time.sleep(0.3)
        frozen = stack.containerd.ingest_offsets()[layer_ref]
        time.sleep(2.5)  # well above 1 MiB at 1 MiB/s: it would have moved by now
        assert stack.containerd.ingest_offsets()[layer_ref] == frozen
        assert layer_ref in stack.containerd.active_ingests()
        assert pull.poll() is None
    finally:
        stack.nginx.thaw()
    assert pull.wait(timeout=30) == 0
    assert img.layers[0].digest in stack.containerd.content_digests()


def test_cri_pull_and_remove(stack, cri_available):
    img = stack.images.image("harness/cri", tag="t1", layers=[300 << 10, 20 << 10])
    r = stack.cri_pull(img, timeout=60)
    # CRI answers with the image id, which containerd makes the config digest.
    assert r.stdout.strip() == img.manifest.config_digest
    names = stack.containerd.image_names()
    assert img.ref(stack.pull_host) in names
    content = stack.containerd.content_digests()
    assert set(img.manifest.layer_digests) <= content
    handle = stack.cri_pull(img, background=True, timeout=60)
    assert handle.result(timeout=60).returncode == 0
    stack.cri_remove(img)
    assert img.ref(stack.pull_host) not in stack.containerd.image_names()
    # A pull of something that does not exist fails with the error on stderr.
    bad = stack.cri_pull(f"{stack.pull_host}/harness/missing:nope", timeout=30, check=False)
    assert bad.returncode != 0 and bad.stderr.strip()


def test_receiver_stores_reports_in_order_and_fails_on_demand():
    with ReportReceiver(token="s3cret") as rec:
        url = rec.url + "/api/v1/report"
        auth = {"Authorization": "Bearer s3cret"}
        assert requests.post(url, json={"seq": 1}, headers=auth).status_code == 200
        assert requests.post(url, json={"seq": 2}).status_code == 401
        rec.fail(503, count=2)
        assert requests.post(url, json={"seq": 3}, headers=auth).status_code == 503
        assert requests.post(url, json={"seq": 4}, headers=auth).status_code == 503
        assert requests.post(url, data=b"{nope", headers=auth).status_code == 400
        assert requests.post(url, json={"seq": 5, "pulls": [
            {"manifestDigest": "sha256:ab", "imageRef": "h/r"}]}, headers=auth).status_code == 200
        assert requests.post(rec.url + "/other", json={}, headers=auth).status_code == 404
        assert [r["seq"] for r in rec.snapshot()] == [1, 5]
        assert [a.status for a in rec.attempts] == [200, 401, 503, 503, 400, 200, 404]
        assert find_pull(rec.reports[1], manifest_digest="sha256:ab")["imageRef"] == "h/r"
        assert find_pull(rec.reports[1], manifest_digest="sha256:cd") is None
        got = rec.wait_for(lambda r: r["seq"] == 5, timeout=1)
        assert got["seq"] == 5
        with pytest.raises(TimeoutError):
            rec.wait_for(lambda r: r["seq"] == 6, timeout=0.3)
        # A report arriving later wakes a waiter.
        rec.fail(500)  # until recover()
        assert requests.post(url, json={"seq": 6}, headers=auth).status_code == 500
        rec.recover()
        import threading
        threading.Timer(0.2, lambda: requests.post(url, json={"seq": 7}, headers=auth)).start()
        assert rec.wait_for(lambda r: r["seq"] == 7, timeout=5, start=2)["seq"] == 7


def test_event_stream_reader_splits_events_as_the_sse_format_says():
    """harness.EventStream on a stream written here, cut into chunks at awkward places: a
    comment, data over two lines and two chunks, CRLF line ends, a block without `event`
    (type "message"), `data:` without a space, then the end of the stream."""
    import threading
    from http.server import ThreadingHTTPServer

    from harness import EventStream
    from harness.httpd import JsonHandler

    parts = [b": hello\n\n", b'id: 1\nevent: a\ndata: {"x":\n', b"data: 1}\n\n",
             b"id: 2\r\nda", b"ta: [2]\r\n\r\n", b"event: b\nid: 3\ndata:{}\n\n"]

    class Handler(JsonHandler):
        def do_GET(self):
            assert self.headers["Last-Event-ID"] == "7"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for p in parts:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True)
    t.start()
    try:
        s = EventStream(f"http://127.0.0.1:{httpd.server_address[1]}", last_id=7)
        s.wait_end(timeout=10)
        assert s.events == [{"id": 1, "event": "a", "data": {"x": 1}},
                            {"id": 2, "event": "message", "data": [2]},
                            {"id": 3, "event": "b", "data": {}}]
        assert s.comments == ["hello"]
        assert s.of("a") == s.events[:1] and s.last_id() == 3
        with pytest.raises(AssertionError):
            s.wait(lambda e: e["event"] == "c", timeout=1)
        s.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_kubeapi_watch_sends_every_change_between_bookmarks(tmp_path):
    """The fake API server's watch loses nothing: a change made while the watch waits for
    one is sent before a bookmark moves the watch's resourceVersion past it."""
    import threading

    from harness.kubeapi import KubeAPI

    api = KubeAPI(tmp_path / "kube", bookmark_interval=0.02).start()
    try:
        resp = requests.get(api.url + "/api/v1/pods", stream=True, timeout=(5, 10),
                            params={"watch": "1", "allowWatchBookmarks": "true",
                                    "timeoutSeconds": "8"},
                            headers={"Authorization": f"Bearer {api.token}"},
                            verify=str(api.ca_file))
        got = []

        def read():
            try:
                for line in resp.iter_lines():
                    if line:
                        got.append(json.loads(line))
            except (requests.RequestException, AttributeError, ValueError):
                pass  # closed by the test
        t = threading.Thread(target=read, daemon=True)
        t.start()
        wait_until(lambda: api.active_watches("pods") == 1, 5, what="the watch")
        for i in range(30):
            api.add_pod("ns", f"p{i}", "n", ["img"])
            if i % 3 == 0:
                api.delete_pod("ns", f"p{i}")
            time.sleep(0.03)
        want = [("ADDED", f"p{i}") for i in range(30)] + \
            [("DELETED", f"p{i}") for i in range(0, 30, 3)]

        def changes():
            return [(e["type"], e["object"]["metadata"]["name"]) for e in list(got)
                    if e["type"] != "BOOKMARK"]
        wait_until(lambda: sorted(changes()) == sorted(want), 5,
                   what=f"every change on the watch (got {len(changes())} of {len(want)})")
        assert any(e["type"] == "BOOKMARK" for e in got)
        resp.close()
    finally:
        api.close()


def test_kubeapi_proxy_passes_on_the_headers_the_real_one_does(tmp_path):
    """The service proxy forwards a request's headers except those kube-apiserver's
    authentication and impersonation filters remove and the hop-by-hop ones."""
    import http.server
    import threading

    from harness import free_port
    from harness.kubeapi import KubeAPI

    seen = {}

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.update({k.lower(): v for k, v in self.headers.items()})
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    api = KubeAPI(tmp_path / "kube").start()
    try:
        api.add_service("pulltrace", "pulltrace-server",
                        [{"name": "http", "port": 8080, "targetPort": "http"}],
                        [("127.0.0.1", {"http": port})])
        r = requests.get(api.url + "/api/v1/namespaces/pulltrace/services/pulltrace-server:http"
                         "/proxy/api/v1/pulls", verify=str(api.ca_file), timeout=10, headers={
                             "Authorization": f"Bearer {api.token}",
                             "X-Remote-User": "admin", "X-Remote-Extra-Scopes": "all",
                             "Proxy-Authorization": "Basic eA==",
                             "X-Pulltrace-Authorization": "Bearer reader", "Cookie": "a=b",
                             "Last-Event-ID": "7"})
        assert r.status_code == 200
        # The service part is split as the API server splits it: two parts are NAME:PORT
        # (so "https:NAME" names the Service "https"), more than three none at all.
        for spec, code, message in (("https:pulltrace-server", 404,
                                     'services "https" not found'),
                                    ("https:pulltrace-server:http:x", 400,
                                     'invalid service request "https:pulltrace-server:http:x"'),
                                    ("ftp:pulltrace-server:http", 400,
                                     'invalid service request "ftp:pulltrace-server:http"')):
            r = requests.get(f"{api.url}/api/v1/namespaces/pulltrace/services/{spec}/proxy/",
                             verify=str(api.ca_file), timeout=10,
                             headers={"Authorization": f"Bearer {api.token}"})
            assert (r.status_code, r.json()["message"]) == (code, message)
    finally:
        api.close()
        backend.shutdown()
        backend.server_close()
    assert seen["x-pulltrace-authorization"] == "Bearer reader"
    assert seen["cookie"] == "a=b" and seen["last-event-id"] == "7"
    for gone in ("authorization", "x-remote-user", "x-remote-extra-scopes", "proxy-authorization"):
        assert gone not in seen, gone


def test_daemon_is_stopped_by_term_then_kill(tmp_path):
    d = Daemon("sleeper", "/bin/sleep", tmp_path / "sleep.log", args=["30"]).start()
    status, took = d.stop(timeout=5)
    assert status == -signal.SIGTERM and took < 2
    # A program that ignores SIGTERM (and its child) is killed after the deadline.
    stubborn = Daemon("stubborn", "/bin/sh", tmp_path / "stubborn.log",
                      args=["-c", "trap '' TERM; echo ready; sleep 30 & wait"]).start(
        ready=lambda: "ready" in (tmp_path / "stubborn.log").read_text().splitlines())
    status, took = stubborn.stop(timeout=0.5)
    assert status == -signal.SIGKILL and 0.4 < took < 5
    # Its child went with it (the whole process group got SIGKILL); allow for reaping.
    wait_until(lambda: subprocess.run(["pgrep", "-g", str(stubborn.pid)],
                                      capture_output=True).returncode == 1, 5,
               what="the stubborn group to be gone")


def test_daemon_gets_only_the_env_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("PULLTRACE_NODE_NAME", "leaked")
    d = Daemon("env", "/usr/bin/env", tmp_path / "env.log",
               env={"PULLTRACE_SERVER_URL": "http://127.0.0.1:1"}).start()
    assert d.wait(timeout=5) == 0
    log = d.log()
    assert "PULLTRACE_SERVER_URL=http://127.0.0.1:1" in log
    assert "leaked" not in log


@pytest.mark.parametrize("mode", ["once", "sigint"])
def test_demo_runs_and_stops_everything(build_dir, mode):
    """scripts/demo.sh's orchestration, small and fast, on free ports: one round of pulls
    with Kubernetes (--once): the server's API shows the pulls with their pods and tags and
    the failing rollout's pull failed with kubelet's message; or the endless loop without
    Kubernetes (--no-kube) stopped by SIGINT as Ctrl-C does."""
    import os
    import re
    import sys
    from pathlib import Path

    from harness import free_port
    from harness.daemon import find_binary

    if find_binary("pulltrace-agent", build_dir, required=False) is None:
        pytest.fail(f"pulltrace-agent is not built in {build_dir}")
    with_server = find_binary("pulltrace-server", build_dir, required=False) is not None
    here = Path(__file__).resolve().parent
    http_addr, nginx_port = f"127.0.0.1:{free_port()}", free_port()
    # --once: slow enough (about 4 s a pull) that the agent sees every pull in flight.
    rate = 256 << 10 if mode == "once" else 4 << 20
    argv = [sys.executable, "-m", "harness.demo", "--build-dir", str(build_dir),
            "--scale", "0.05", "--rate", str(rate), "--pause", "2" if mode == "once" else "0",
            "--registry-port", str(free_port()), "--nginx-port", str(nginx_port),
            "--http-addr", http_addr, "--metrics-addr", f"127.0.0.1:{free_port()}"]
    # --once: a cluster of three nodes (the demo node and two more) for the rollout.
    argv += ["--once", "--nodes", "2"] if mode == "once" else ["--no-kube", "--nodes", "0"]
    env = dict(os.environ, PYTHONPATH=str(here), PYTHONDONTWRITEBYTECODE="1")
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"pt-demo-test-{os.getpid()}.log"
    seen = {}  # pull id -> every distinct version of it the server's API showed

    def poll_api():
        try:
            pulls = requests.get(f"http://{http_addr}/api/v1/pulls", timeout=2).json()["pulls"]
        except (requests.RequestException, ValueError, KeyError):
            return
        for p in pulls:
            versions = seen.setdefault(p["id"], [])
            if p not in versions:
                versions.append(p)

    with open(log_path, "w+") as log:
        demo = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=here)
        try:
            if mode == "sigint":
                wait_until(lambda: "pulled " in log_path.read_text(), 120,
                           what="the demo's first pull in the loop")
                demo.send_signal(signal.SIGINT)
                rc = demo.wait(timeout=30)
            else:
                deadline = time.monotonic() + 240
                while demo.poll() is None and time.monotonic() < deadline:
                    poll_api()
                    time.sleep(0.25)
                rc = demo.wait(timeout=max(1, deadline - time.monotonic()))
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
        log.seek(0)
        out = log.read()
    log_path.unlink()
    assert rc == 0, out
    names = ("demo/web:1.4", "demo/multiarch:2.0", "demo/batch:3.1")
    for name in names if mode == "once" else names[:1]:
        assert re.search(rf"pulled \S+/{re.escape(name)} in", out), out
    assert "pulltrace-agent (pid" in out and "stopping everything" in out
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]
    assert len(pids) >= 4, out  # containerd, registry, nginx, agent (+ server)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or \
            "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], f"pid {pid} left running"
    workdir = re.search(r"working directory (\S+)", out).group(1)
    assert not Path(workdir).exists()
    if mode == "sigint":
        assert "Kubernetes" not in out, out
        return
    if not with_server:
        pytest.fail(f"pulltrace-server is not built in {build_dir}: the Kubernetes part of "
                    f"the demo needs it")

    # Kubernetes on: pods and tags from the fake API server and kubelet's events.
    assert "fake Kubernetes API server https://127.0.0.1:" in out, out
    versions = [v for vs in seen.values() for v in vs]
    host = f"127.0.0.1:{nginx_port}"
    pods = {(p["namespace"], p["name"], p.get("container"))
            for v in versions if v["image"] == f"{host}/demo/web:1.4" for p in v["pods"]}
    assert ("shop", "web-1", "web") in pods, json.dumps(versions, indent=1)
    assert any(v["image"] == f"{host}/demo/batch:3.1" and v["state"] == "completed" and
               [(p["namespace"], p["name"]) for p in v["pods"]] == [("batch", "job-1")]
               for v in versions), json.dumps(versions, indent=1)
    # The failing rollout: kubelet's Failed event with the CRI error, then its BackOff.
    bad_ref = f"{host}/demo/web:1.5"
    m = re.search(r"(shop/web-\d+): Failed: (Failed to pull image .*)", out)
    assert m, out
    bad_pod, message = m.group(1), m.group(2)
    assert message.startswith(f'Failed to pull image "{bad_ref}": rpc error: code = NotFound '
                              f'desc = ') and "not found" in message, message
    failed = [v for v in versions if v["image"] == bad_ref]
    assert failed and all(v["state"] == "failed" and v["source"] == "kubelet" for v in failed), \
        json.dumps(failed, indent=1)
    assert len({v["id"] for v in failed}) == 1, json.dumps(failed, indent=1)
    assert [f"{p['namespace']}/{p['name']}" for p in failed[0]["pods"]] == [bad_pod]
    errors = [v["error"] for v in failed]
    assert {"reason": "Failed", "message": message} in errors, json.dumps(errors, indent=1)
    # kubelet's generic back-off message does not replace the cause.
    assert errors[-1] == {"reason": "BackOff", "message": message}, errors
    # The demo's own summary of the server's view names the pods too.
    assert re.search(rf"completed +{re.escape(host)}/demo/web:1.4 +pods: shop/web-1", out), out
    # The rollout: demo/api:2.0 on every node, each pull for its node's pod; the last node
    # stalled for a while.
    api_ref = f"{host}/demo/api:2.0"
    nodes = {"demo-node", "node-1", "node-2"}
    assert f"node-2 stalls" in out and "every node has" in out, out
    done = {(v["node"], tuple(f"{p['namespace']}/{p['name']}" for p in v["pods"]))
            for v in versions if v["image"] == api_ref and v["state"] == "completed"}
    assert {n for n, _ in done} == nodes, json.dumps(versions, indent=1)
    assert {(n, (f"platform/api-1-{n}",)) for n in nodes} <= done, done
    assert re.search(rf"failed +{re.escape(bad_ref)} +pods: {bad_pod} +error: BackOff", out), out
