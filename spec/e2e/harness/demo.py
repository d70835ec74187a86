"""The local demo (scripts/demo.sh): the e2e harness's own components, kept running.

    /usr/bin/python3 -m harness.demo [--build-dir build]     (with spec/e2e on PYTHONPATH)

It starts a private containerd, docker-registry on 127.0.0.1:5000 and a throttling nginx on
127.0.0.1:5001, builds demo images (one multi-arch, one sharing a layer with a base image),
starts pulltrace-server when it is built (else a small receiver that prints the agent's
reports), starts pulltrace-agent on the private containerd, and pulls the images through CRI
over and over (pull, remove, pull again) so something is always moving.

With the server it also starts the tests' fake Kubernetes API server (harness/kubeapi.py,
HTTPS on 127.0.0.1) and points the server at it with PULLTRACE_KUBECONFIG, and stands in for
kubelet on the demo node as the tests do: each pull is for a Pod (shop/web-<n>, batch/job-<n>,
...) with kubelet's Pulling and Pulled events, so the UI shows pods and image tags; every few
rounds a pod asks for a tag that was never pushed, the CRI pull really fails and kubelet's
Failed and BackOff events follow (then retries with back-off), so a failed pull shows too.
Pods are deleted when their image leaves the node. --no-kube turns this off.

With the server it also runs a small cluster (--nodes, default 4; harness/cluster.py): more
nodes, each with its own containerd, throttling nginx and agent, and every round one image
(demo/api:2.0) rolls out across all nodes, some faster than others, the last one stalling for
a while (its nginx frozen), with a pod per node and kubelet's events.

Ctrl-C stops everything it started, each by its PID.
"""

import argparse
import json
import os
import re
import signal
import sys
import time

import requests

from .cluster import ClusterNode
from .daemon import find_binary
from .images import Image
from .kubeapi import KubeAPI
from .proc import HarnessError
from .receiver import summarize
from .stack import Stack

MIB = 1 << 20


def log(msg):
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=None, help="CMake build directory (default: build)")
    p.add_argument("--registry-port", type=int, default=5000)
    p.add_argument("--nginx-port", type=int, default=5001)
    p.add_argument("--rate", type=int, default=512 * 1024,
                   help="nginx limit per connection, bytes/s (default 512 KiB/s: a pull "
                        "takes 30-60 s)")
    p.add_argument("--http-addr", default="127.0.0.1:8080")
    p.add_argument("--metrics-addr", default="127.0.0.1:9090")
    p.add_argument("--node-name", default="demo-node")
    p.add_argument("--pause", type=float, default=5.0,
                   help="seconds a pulled image stays on the node before it is removed and pulled again")
    p.add_argument("--no-server", action="store_true",
                   help="print the agent's reports instead of starting pulltrace-server "
                        "(implies --no-kube)")
    p.add_argument("--no-kube", action="store_true",
                   help="no fake Kubernetes API server: no pods, no tags, no kubelet events "
                        "(and so no failed pulls) in the UI")
    p.add_argument("--kube-port", type=int, default=None,
                   help="port of the fake Kubernetes API server on 127.0.0.1 (default: a "
                        "free one)")
    p.add_argument("--once", action="store_true",
                   help="pull every image once (with Kubernetes, one failing rollout too), "
                        "print the server's view of the pulls, then stop (a smoke test of "
                        "the demo)")
    p.add_argument("--nodes", type=int, default=4,
                   help="cluster nodes beside the demo node, each with its own containerd, "
                        "throttling nginx and agent; one image rolls out across all nodes "
                        "every round (default 4; 0: one node, no rollout)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the demo layer sizes (e.g. 0.1 for a quick run)")
    return p.parse_args(argv)


def build_images(stack, scale):
    def size(mib):
        return max(64 * 1024, int(mib * MIB * scale))

    log("building demo images (random layers, gzip -1, OCI layout, skopeo push)")
    b = stack.images
    shared = b.layer(size(6), files=3)
    base = b.image("demo/base", "1.0", layers=[shared])
    web = b.image("demo/web", "1.4", layers=[shared, size(10), size(16)])
    multi = b.index("demo/multiarch", "2.0", platforms={
        "amd64": [size(12), size(8)],
        "arm64": [size(11), size(7)],
    })
    batch = b.image("demo/batch", "3.1", layers=[size(4), size(20), size(2)])
    # The rollout's image: its first layer is the base image's, cached on the demo node only.
    api = b.image("demo/api", "2.0", layers=[shared, size(10), size(14), size(3)])
    for img in (base, web, multi, batch, api):
        kind = "index (amd64+arm64)" if img.is_index else "image"
        log(f"  {img.ref(stack.pull_host)}  {kind}  {img.total_bytes / MIB:.1f} MiB in "
            f"{len(img.layers)} layers  manifest {img.manifest_digest[:19]}")
    return base, [web, multi, batch], api


class Puller:
    """Pulls through CRI (pt-cri-pull), or ctr when pt-cri-pull is not built."""

    def __init__(self, stack):
        self.stack = stack
        self.cri = stack.cri.available()
        if not self.cri:
            log(f"note: {stack.cri.binary} not built; pulling with ctr instead of CRI")

    def start(self, img):
        """Starts a background pull of an Image or a reference."""
        if self.cri:
            return self.stack.cri_pull(img, background=True, timeout=900)
        return self.stack.ctr_pull(img, background=True)

    def finished(self, handle):
        """Forgets a finished pull's handle (the demo runs for hours) and returns what the
        container runtime said when it failed (empty when it succeeded)."""
        if handle in self.stack.cri.background:
            self.stack.cri.background.remove(handle)
        if handle.returncode == 0:
            return ""
        if self.cri:
            return handle.stderr_text.strip()
        return f"ctr images pull failed with status {handle.returncode}"

    def remove(self, img):
        if self.cri:
            r = self.stack.cri_remove(img, check=False)
        else:
            r = self.stack.containerd.remove_image(self.stack.ref(img))
        if r.returncode != 0:
            log(f"remove {img.ref(self.stack.pull_host)} failed: {r.stderr.strip()}")


# -- kubelet's part ---------------------------------------------------------------------------

# Which pods ask for the demo images: image name -> (namespace, pod name prefix, container).
APPS = {
    "demo/base": ("infra", "base", "base"),
    "demo/web": ("shop", "web", "web"),
    "demo/multiarch": ("edge", "proxy", "proxy"),
    "demo/batch": ("batch", "job", "job"),
    "demo/api": ("platform", "api", "api"),
}
# The failing rollout: shop's web at a tag that was never pushed.
BAD_IMAGE, BAD_TAG = "demo/web", "1.5"

GRPC_CODES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
              "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
              "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
              "Unauthenticated")


def go_duration(seconds):
    """A duration as Go's time.Duration prints it (kubelet's %v), to the millisecond."""
    ms = max(0, int(round(seconds * 1000)))
    if ms < 1000:
        return f"{ms}ms"
    m, rest = divmod(ms, 60000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{m}m{secs}" if m else secs


def cri_error(stderr):
    """pt-cri-pull's "PullImage X failed: code 5: <desc>" as kubelet prints a CRI error:
    "rpc error: code = NotFound desc = <desc>"."""
    text = " ".join(stderr.split())
    m = re.search(r"failed: code (\d+): (.*)$", text)
    if not m:
        return text or "unknown error"
    code = int(m.group(1))
    name = GRPC_CODES[code] if code < len(GRPC_CODES) else f"Code({code})"
    return f"rpc error: code = {name} desc = {m.group(2)}"


class Kubelet:
    """Stands in for kubelet on the demo node, as the e2e tests do: a Pod on the fake API
    server for every pull, and kubelet's image events with the messages kubelet writes
    (Pulling, Pulled, Failed, BackOff). Events repeated for the same pod are aggregated
    (count + 1), as kubelet's event recorder does. A pod is deleted with its events when the
    demo is done with it (a real cluster keeps events for an hour), and old changes are
    compacted away, so the fake API server stays small however long the demo runs."""

    def __init__(self, api, node):
        self.api = api
        self.node = node
        self.seq = {}
        self.events = {}   # (namespace, pod) -> [events]

    def create_pod(self, image_name, ref, name=None):
        ns, prefix, container = APPS.get(image_name, ("default", "app", "app"))
        if name is None:
            n = self.seq[prefix] = self.seq.get(prefix, 0) + 1
            name = f"{prefix}-{n}"
        pod = self.api.add_pod(ns, name, self.node, [(container, ref)])
        self.events[(ns, pod["metadata"]["name"])] = []
        return pod

    @staticmethod
    def name(pod):
        return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"

    def event(self, pod, reason, message, type_="Normal"):
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        evs = self.events.setdefault(key, [])
        for i, ev in enumerate(evs):
            if ev["reason"] == reason and ev["message"] == message:
                evs[i] = self.api.repeat_event(ev)
                return evs[i]
        ev = self.api.add_event(pod, reason, message, type_=type_)
        evs.append(ev)
        return ev

    def _waiting(self, pod, reason, message):
        def set_waiting(p):
            for c in p["status"].get("containerStatuses", []):
                c["state"] = {"waiting": {"reason": reason, "message": message}}
        md = pod["metadata"]
        self.api.modify_pod(md["namespace"], md["name"], set_waiting)

    def pulling(self, pod, ref):
        self.event(pod, "Pulling", f'Pulling image "{ref}"')

    def pulled(self, pod, ref, seconds, size):
        d = go_duration(seconds)
        self.event(pod, "Pulled", f'Successfully pulled image "{ref}" in {d} ({d} including '
                                  f'waiting). Image size: {size} bytes.')
        md = pod["metadata"]
        self.api.set_pod_running(md["namespace"], md["name"])

    def failed(self, pod, ref, error):
        message = f'Failed to pull image "{ref}": {error}'
        self.event(pod, "Failed", message, type_="Warning")
        self.event(pod, "Failed", "Error: ErrImagePull", type_="Warning")
        self._waiting(pod, "ErrImagePull", error)
        return message

    def backoff(self, pod, ref):
        message = f'Back-off pulling image "{ref}"'
        self.event(pod, "BackOff", message)
        self.event(pod, "Failed", "Error: ImagePullBackOff", type_="Warning")
        self._waiting(pod, "ImagePullBackOff", message)
        return message

    def delete_pod(self, pod):
        md = pod["metadata"]
        try:
            self.api.delete_pod(md["namespace"], md["name"])
        except KeyError:
            pass
        for ev in self.events.pop((md["namespace"], md["name"]), []):
            self.api.delete_event(ev)
        self.api.trim_history(keep=2000)


class FailingRollout:
    """Every few rounds a pod asks for a tag that was never pushed (shop/web-<n> wants
    demo/web:1.5): the CRI pull really fails, kubelet posts Failed (the CRI error) and
    `Error: ErrImagePull`, then BackOff and `Error: ImagePullBackOff`, and retries after
    kubelet's image back-off (10 s, doubling) a few times. Then the rollout is "rolled back"
    (the pod is deleted) until the next one. With --once: one deployment, one failure and its
    BackOff, no retries."""

    BACKOFF = (10.0, 20.0, 40.0)
    BACKOFF_EVENT_AFTER = 3.0   # kubelet's next pod sync sees the back-off
    EVERY = 6                   # successful pulls between two failing rollouts

    def __init__(self, stack, puller, kubelet, first_at, once):
        self.stack, self.puller, self.kubelet = stack, puller, kubelet
        self.ref = f"{stack.pull_host}/{BAD_IMAGE}:{BAD_TAG}"
        self.once = once
        self.phase, self.at = "idle", first_at
        self.after_pulls = 0
        self.pod = self.handle = None
        self.retries = 0
        self.done = False

    def step(self, now, pulls_done):
        if self.done:
            return
        if self.phase == "idle":
            if now >= self.at and pulls_done >= self.after_pulls:
                self.pod = self.kubelet.create_pod(BAD_IMAGE, self.ref)
                self.retries = 0
                log(f"deploy {Kubelet.name(self.pod)} with {self.ref} (a tag that was never "
                    f"pushed)")
                self._pull()
        elif self.phase == "pulling":
            if self.handle.poll() is None:
                return
            error = self.puller.finished(self.handle)
            self.handle = None
            if not error:   # somebody pushed the tag after all
                self.kubelet.pulled(self.pod, self.ref, 0.0, 0)
                self._rollback(now)
                return
            msg = self.kubelet.failed(self.pod, self.ref, cri_error(error))
            log(f"{Kubelet.name(self.pod)}: Failed: {msg}")
            self.phase, self.at = "failed", now + self.BACKOFF_EVENT_AFTER
        elif now < self.at:
            return
        elif self.phase == "failed":
            self.kubelet.backoff(self.pod, self.ref)
            log(f"{Kubelet.name(self.pod)}: BackOff: Back-off pulling image \"{self.ref}\"")
            if self.once:
                self.done = True
            elif self.retries < len(self.BACKOFF):
                self.phase, self.at = "backoff", now + self.BACKOFF[self.retries]
            else:
                self.phase, self.at = "rollback", now + 5.0
        elif self.phase == "backoff":
            self.retries += 1
            self._pull()
        elif self.phase == "rollback":
            self._rollback(now)
            self.after_pulls = pulls_done + self.EVERY

    def _pull(self):
        self.kubelet.pulling(self.pod, self.ref)
        self.handle = self.puller.start(self.ref)
        self.phase = "pulling"

    def _rollback(self, now):
        log(f"roll back: delete {Kubelet.name(self.pod)}")
        self.kubelet.delete_pod(self.pod)
        self.pod = None
        self.phase, self.at = "idle", now

    def stop(self):
        if self.handle is not None:
            self.handle.stop()


def start_kube(stack, args):
    """The fake Kubernetes API server (HTTPS on 127.0.0.1); stopped by stack.close()."""
    try:
        api = KubeAPI(stack.dir / "kubeapi", port=args.kube_port).start()
    except Exception as e:  # openssl missing, port taken: the demo still works without it
        log(f"fake Kubernetes API server did not start ({e}); going on without Kubernetes")
        return None
    stack.started.append(api)
    log(f"fake Kubernetes API server {api.url} (in this process), kubeconfig "
        f"{api.write_kubeconfig()}")
    return api


def start_server(stack, args, kube=None):
    """pulltrace-server if it is built and stays up; returns it (a `Server`) or None."""
    binary = find_binary("pulltrace-server", stack.build_dir, required=False)
    if binary is None:
        return None
    # A history (SQLite in the working directory) for the UI's History view.
    (stack.dir / "data").mkdir(exist_ok=True)
    env = {"PULLTRACE_LOG_LEVEL": "info", "PULLTRACE_KUBERNETES": "on" if kube else "off",
           "PULLTRACE_DATA_DIR": str(stack.dir / "data")}
    if kube:
        env["PULLTRACE_KUBECONFIG"] = str(kube.dir / "kubeconfig")
    try:
        server = stack.server(env=env, binary=binary, http_addr=args.http_addr,
                              metrics_addr=args.metrics_addr)
    except HarnessError as e:
        log(f"pulltrace-server did not start, using the report printer instead:\n{e}")
        return None
    log(f"pulltrace-server up (pid {server.pid}), log {server.log_path}")
    if kube:
        try:
            server.wait_kube_ready(20)
            log("pulltrace-server watches pods and events on the fake Kubernetes API")
        except TimeoutError:
            log("warning: pulltrace-server has not synced with the Kubernetes API in 20 s")
    return server


class Printer:
    """Prints a summary of the agent's reports when they change, at most every 2 s."""

    def __init__(self):
        self.last_key = None
        self.last_time = 0.0

    def __call__(self, report):
        key = json.dumps(report.get("pulls"), sort_keys=True) + \
            json.dumps(report.get("unattributed"), sort_keys=True)
        now = time.monotonic()
        if key == self.last_key or now - self.last_time < 2.0:
            return
        self.last_key, self.last_time = key, now
        print(summarize(report), flush=True)


def run(args):
    if os.geteuid() != 0:
        sys.exit("demo: containerd needs root; run it as root (sudo scripts/demo.sh)")
    stack = Stack(registry_port=args.registry_port, nginx_port=args.nginx_port,
                  rate=args.rate, build=args.build_dir)
    log(f"working directory {stack.dir} (logs in it)")
    try:
        stack.start()
        log(f"containerd {stack.containerd.socket} (pid {stack.containerd.pid})")
        log(f"docker-registry {stack.registry.url} (pid {stack.registry.proc.pid})")
        log(f"nginx {stack.nginx.url} -> registry, {args.rate // 1024} KiB/s per connection "
            f"(pid {stack.nginx.pid})")
        base, images, rollout_image = build_images(stack, args.scale)
        puller = Puller(stack)

        kube = None
        if not args.no_server and not args.no_kube and \
                find_binary("pulltrace-server", stack.build_dir, required=False) is not None:
            kube = start_kube(stack, args)
        server = None if args.no_server else start_server(stack, args, kube)
        sink = server   # where the agent reports
        if server is None:
            sink = stack.receiver(on_report=Printer())
            log(f"pulltrace-server not available: agent reports go to a printer at {sink.url}")
            kube = None
        kubelet = Kubelet(kube, args.node_name) if kube else None
        agent_bin = find_binary("pulltrace-agent", stack.build_dir, required=False)
        if agent_bin is None:
            raise HarnessError(f"pulltrace-agent is not built in {stack.build_dir}")
        agent = stack.agent(sink, node_name=args.node_name, env=AGENT_ENV)
        log(f"pulltrace-agent (pid {agent.pid}) -> {sink.url}, log {agent.log_path}")

        cluster = start_cluster(stack, server, args) if server and args.nodes > 0 else []

        # The base image stays on the node, so its layer shows as cached in demo/web.
        log(f"pulling {base.ref(stack.pull_host)} (its layer is shared with demo/web)")
        ref = stack.ref(base)
        pod = kubelet.create_pod(base.name, ref) if kubelet else None
        if pod:
            kubelet.pulling(pod, ref)
        t = time.monotonic()
        h = puller.start(base)
        if h.wait(timeout=600) != 0:
            raise HarnessError(f"pull of {ref} failed: {puller.finished(h)}")
        puller.finished(h)
        if pod:
            kubelet.pulled(pod, ref, time.monotonic() - t, base.total_bytes)
        if server:
            log(f"open http://{args.http_addr} (UI and API), metrics on "
                f"http://{args.metrics_addr}/metrics")
        log("pulling the demo images in a loop; Ctrl-C stops everything")
        rollout = None
        if cluster and puller.cri:
            targets = [LocalNode(stack, puller, args.node_name)] + cluster
            rollout = Rollout(stack.ref(rollout_image), rollout_image, targets, kube, args)
        loop(stack, puller, images, args, kubelet, rollout)
        if args.once and server:
            server_summary(server, kubelet is not None)
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave daemons behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("stopping everything the demo started")
        stack.close()
        log("done")


# -- a cluster and a rollout across it ----------------------------------------------------------

# The demo's agents call a download stalled after 10 s without progress (the default is 30 s),
# so the rollout's stalling node shows as stalled for most of its stall.
AGENT_ENV = {"PULLTRACE_LOG_LEVEL": "info", "PULLTRACE_STALL_THRESHOLD": "10s"}

# Each cluster node's nginx rate as a share of --rate: some nodes fast, some slow.
NODE_SPEEDS = (2.0, 1.0, 0.5, 1.5, 0.35, 0.8, 1.2, 0.6)


def start_cluster(stack, server, args):
    nodes = []
    for i in range(args.nodes):
        rate = max(16 * 1024, int(args.rate * NODE_SPEEDS[i % len(NODE_SPEEDS)]))
        node = ClusterNode(stack, f"node-{i + 1}", rate).start(server, env=AGENT_ENV)
        log(f"cluster node {node.name}: containerd {node.containerd.socket} "
            f"(pid {node.containerd.pid}), nginx {node.nginx.url} at {rate // 1024} KiB/s per "
            f"connection (pid {node.nginx.pid}), pulltrace-agent (pid {node.agent.pid})")
        nodes.append(node)
    return nodes


class LocalNode:
    """The stack's own node as a rollout target (the same calls as a ClusterNode)."""

    def __init__(self, stack, puller, name):
        self.stack, self.puller, self.name = stack, puller, name

    def pull(self, ref):
        return self.puller.start(ref)

    def finished(self, handle):
        return self.puller.finished(handle)

    def remove(self, ref):
        return self.stack.cri.remove(ref, check=False)

    def freeze(self):
        pass

    def thaw(self):
        pass


class Rollout:
    """Every round, one image (demo/api:2.0) rolls out across every node, as a DaemonSet
    would: a pod per node (platform/api-<round>-<node>) with kubelet's Pulling and Pulled
    events, the pulls starting a moment apart. Nodes differ in speed (their own nginx rate)
    and the last node stalls for a while in each round (its nginx frozen, then thawed). Once
    every node has the image it stays a while (the rollout shows as done), then the pods go,
    the image is removed everywhere and the next round starts."""

    STAGGER = 0.7       # seconds between two nodes' pulls
    STALL_AFTER = 6.0   # seconds into a round when the last node stalls
    PAUSE = 12.0        # seconds a finished rollout stays before the next round

    def __init__(self, ref, image, nodes, kube, args):
        self.ref, self.image, self.nodes = ref, image, nodes
        self.kubelets = {n.name: Kubelet(kube, n.name) for n in nodes} if kube else {}
        self.once = args.once
        self.stall_for = 3.0 if args.once else 30.0
        self.stall_after = 1.0 if args.once else self.STALL_AFTER
        self.round = 0
        self.phase, self.at = "idle", time.monotonic() + 2.0
        self.work = {}
        self.done = False

    def step(self, now):
        if self.done or now < self.at and self.phase in ("idle", "shown"):
            return
        if self.phase == "idle":
            self.round += 1
            log(f"rollout {self.round}: {self.ref} to {len(self.nodes)} nodes "
                f"({', '.join(n.name for n in self.nodes)}); {self.nodes[-1].name} will stall "
                f"for {self.stall_for:.0f} s")
            self.work = {n.name: {"node": n, "start": now + i * self.STAGGER, "handle": None,
                                  "since": None, "pod": None, "done": False}
                         for i, n in enumerate(self.nodes)}
            self.started, self.phase = now, "rolling"
            self.thaw_at = None
        if self.phase == "rolling":
            self._roll(now)
        elif self.phase == "shown":
            for w in self.work.values():
                kubelet = self.kubelets.get(w["node"].name)
                if kubelet and w["pod"] is not None:
                    kubelet.delete_pod(w["pod"])
                w["node"].remove(self.ref)
            if self.once:
                self.done = True
            self.phase, self.at = "idle", now + 3.0

    def _roll(self, now):
        last = self.nodes[-1]
        if self.thaw_at is None and now >= self.started + self.stall_after:
            log(f"rollout {self.round}: {last.name} stalls (its nginx frozen)")
            last.freeze()
            self.thaw_at = now + self.stall_for
        elif self.thaw_at is not None and now >= self.thaw_at and getattr(last, "frozen", False):
            log(f"rollout {self.round}: {last.name} goes on")
            last.thaw()
        for name, w in self.work.items():
            kubelet = self.kubelets.get(name)
            if w["handle"] is None and not w["done"] and now >= w["start"]:
                if kubelet:
                    w["pod"] = kubelet.create_pod(self.image.name, self.ref,
                                                  name=f"api-{self.round}-{name}")
                    kubelet.pulling(w["pod"], self.ref)
                w["handle"], w["since"] = w["node"].pull(self.ref), now
            elif w["handle"] is not None and w["handle"].poll() is not None:
                took = now - w["since"]
                error = w["node"].finished(w["handle"])
                if error:
                    log(f"rollout {self.round}: {name} failed after {took:.0f} s: {error}")
                    if kubelet and w["pod"] is not None:
                        kubelet.failed(w["pod"], self.ref, cri_error(error))
                elif kubelet and w["pod"] is not None:
                    kubelet.pulled(w["pod"], self.ref, took, self.image.total_bytes)
                w["handle"], w["done"] = None, True
        if all(w["done"] for w in self.work.values()):
            last.thaw()
            log(f"rollout {self.round}: every node has {self.ref} after "
                f"{now - self.started:.0f} s")
            self.phase, self.at = "shown", now + (2.0 if self.once else self.PAUSE)

    def stop(self):
        for n in self.nodes:
            n.thaw()
        for w in self.work.values():
            if w["handle"] is not None:
                w["handle"].stop()


def loop(stack, puller, images, args, kubelet=None, rollout=None):
    # Staggered starts: a new pull begins every few seconds while others are half-way.
    t0 = time.monotonic()
    state = {img.name: {"next": t0 + i * 8.0, "handle": None, "since": None, "rounds": 0,
                        "remove_at": None, "pod": None}
             for i, img in enumerate(images)}
    by_name = {img.name: img for img in images}
    # The first failing rollout comes early, so a new user sees a failed pull at once.
    failing = FailingRollout(stack, puller, kubelet, t0 + 4.0, args.once) \
        if kubelet and puller.cri else None
    pulls_done = 0
    try:
        while True:
            now = time.monotonic()
            for name, st in state.items():
                img: Image = by_name[name]
                ref = stack.ref(img)
                h = st["handle"]
                if st["remove_at"] is not None and now >= st["remove_at"]:
                    # The image stays on the node for a while, as kubelet would keep it, so
                    # the completed pull is seen; then its pod goes away (kubelet's image
                    # garbage collection never removes an image a container uses), the image
                    # is removed, and a new pod pulls it again.
                    if st["pod"] is not None:
                        kubelet.delete_pod(st["pod"])
                        st["pod"] = None
                    puller.remove(img)
                    st["remove_at"] = None
                    st["next"] = None if args.once else now + 1.0
                elif h is None and st["next"] is not None and now >= st["next"]:
                    who = ""
                    if kubelet:
                        st["pod"] = kubelet.create_pod(img.name, ref)
                        kubelet.pulling(st["pod"], ref)
                        who = f" for pod {Kubelet.name(st['pod'])}"
                    log(f"pull {ref} ({img.total_bytes / MIB:.1f} MiB){who}")
                    st["handle"], st["since"] = puller.start(img), now
                elif h is not None and h.poll() is not None:
                    took = now - st["since"]
                    error = puller.finished(h)
                    if h.returncode == 0:
                        log(f"pulled {ref} in {took:.0f} s")
                        if st["pod"] is not None:
                            kubelet.pulled(st["pod"], ref, took, img.total_bytes)
                        pulls_done += 1
                    else:
                        log(f"pull {ref} failed after {took:.0f} s: {error}")
                        if st["pod"] is not None:
                            kubelet.failed(st["pod"], ref, cri_error(error))
                    st["handle"] = None
                    st["rounds"] += 1
                    st["remove_at"] = now + args.pause
                    st["next"] = None
            if failing:
                failing.step(now, pulls_done)
            if rollout:
                rollout.step(now)
            if args.once and all(st["rounds"] >= 1 and st["remove_at"] is None
                                 for st in state.values()) and (not failing or failing.done) \
                    and (not rollout or rollout.done):
                return
            time.sleep(0.5)
    finally:
        if failing:
            failing.stop()
        if rollout:
            rollout.stop()


def server_summary(server, kube, timeout=15.0):
    """--once: waits (briefly) until the server has seen every pull finish, then prints its
    view, one line a pull, as the UI shows it."""
    deadline = time.monotonic() + timeout
    pulls = []
    while time.monotonic() < deadline:
        try:
            pulls = server.pulls()
        except (requests.RequestException, ValueError, KeyError):
            pulls = []
        done = pulls and all(p.get("state") in ("completed", "failed") for p in pulls)
        if done and (not kube or all(p.get("pods") for p in pulls)):
            break
        time.sleep(0.5)
    log(f"the server's view ({server.url}/api/v1/pulls):")
    for p in sorted(pulls, key=lambda p: p.get("startedAt") or ""):
        pods = ",".join(f"{x.get('namespace')}/{x.get('name')}" for x in p.get("pods") or [])
        line = f"  {p.get('state'):<9} {p.get('image') or p.get('imageRef')}  pods: {pods or '-'}"
        if p.get("error"):
            line += f"  error: {p['error'].get('reason')}: {p['error'].get('message')}"
        print(line, flush=True)


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])

    def on_term(signum, frame):
        raise KeyboardInterrupt

    # Handle SIGINT explicitly too: a shell that starts the demo in the background would
    # otherwise leave it ignored, and Ctrl-C (or kill -INT) would not stop anything.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        run(args)
    except KeyboardInterrupt:
        pass
    except HarnessError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
