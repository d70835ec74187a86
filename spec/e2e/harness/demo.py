"""The local demo (scripts/demo.sh): the e2e harness's own components, kept running.

    /usr/bin/python3 -m harness.demo [--build-dir build]     (with spec/e2e on PYTHONPATH)

It starts a private containerd, docker-registry on 127.0.0.1:5000 and a throttling nginx on
127.0.0.1:5001, builds demo images (one multi-arch, one sharing a layer with a base image),
starts pulltrace-server when it is built (else a small receiver that prints the agent's
reports), starts pulltrace-agent on the private containerd, and pulls the images through CRI
over and over (pull, remove, pull again) so something is always moving. Ctrl-C stops
everything it started, each by its PID.
"""

import argparse
import json
import os
import signal
import sys
import time

import requests

from .daemon import find_binary
from .images import Image
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
                   help="print the agent's reports instead of starting pulltrace-server")
    p.add_argument("--once", action="store_true",
                   help="pull every image once, then stop (a smoke test of the demo)")
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
    for img in (base, web, multi, batch):
        kind = "index (amd64+arm64)" if img.is_index else "image"
        log(f"  {img.ref(stack.pull_host)}  {kind}  {img.total_bytes / MIB:.1f} MiB in "
            f"{len(img.layers)} layers  manifest {img.manifest_digest[:19]}")
    return base, [web, multi, batch]


class Puller:
    """Pulls through CRI (pt-cri-pull), or ctr when pt-cri-pull is not built."""

    def __init__(self, stack):
        self.stack = stack
        self.cri = stack.cri.available()
        if not self.cri:
            log(f"note: {stack.cri.binary} not built; pulling with ctr instead of CRI")

    def start(self, img):
        if self.cri:
            return self.stack.cri_pull(img, background=True, timeout=900)
        return self.stack.ctr_pull(img, background=True)

    def remove(self, img):
        if self.cri:
            r = self.stack.cri_remove(img, check=False)
        else:
            r = self.stack.containerd.remove_image(self.stack.ref(img))
        if r.returncode != 0:
            log(f"remove {img.ref(self.stack.pull_host)} failed: {r.stderr.strip()}")


def start_server(stack, args):
    """pulltrace-server if it is built and stays up; returns its URL or None."""
    binary = find_binary("pulltrace-server", stack.build_dir, required=False)
    if binary is None:
        return None
    env = {"PULLTRACE_HTTP_ADDR": args.http_addr,
           "PULLTRACE_METRICS_ADDR": args.metrics_addr,
           "PULLTRACE_LOG_LEVEL": "info"}
    url = f"http://{args.http_addr}"

    def healthy():
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        stack.daemon("pulltrace-server", env=env, binary=binary, ready=healthy, timeout=15)
    except HarnessError as e:
        log(f"pulltrace-server did not start, using the report printer instead:\n{e}")
        return None
    log(f"pulltrace-server up (pid {stack.daemons[-1].pid}), log {stack.daemons[-1].log_path}")
    return url


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
        base, images = build_images(stack, args.scale)
        puller = Puller(stack)

        url = None if args.no_server else start_server(stack, args)
        if url is None:
            receiver = stack.receiver(on_report=Printer())
            url = receiver.url
            log(f"pulltrace-server not available: agent reports go to a printer at {url}")
        agent_bin = find_binary("pulltrace-agent", stack.build_dir, required=False)
        if agent_bin is None:
            raise HarnessError(f"pulltrace-agent is not built in {stack.build_dir}")
        agent = stack.agent(url, node_name=args.node_name,
                            env={"PULLTRACE_LOG_LEVEL": "info"})
        log(f"pulltrace-agent (pid {agent.pid}) -> {url}, log {agent.log_path}")

        # The base image stays on the node, so its layer shows as cached in demo/web.
        log(f"pulling {base.ref(stack.pull_host)} (its layer is shared with demo/web)")
        h = puller.start(base)
        if h.wait(timeout=600) != 0:
            raise HarnessError(f"pull of {base.ref(stack.pull_host)} failed")
        if url.endswith(args.http_addr):
            log(f"open http://{args.http_addr} (UI and API), metrics on "
                f"http://{args.metrics_addr}/metrics")
        log("pulling the demo images in a loop; Ctrl-C stops everything")
        loop(stack, puller, images, args)
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave daemons behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("stopping everything the demo started")
        stack.close()
        log("done")


def loop(stack, puller, images, args):
    # Staggered starts: a new pull begins every few seconds while others are half-way.
    t0 = time.monotonic()
    state = {img.name: {"next": t0 + i * 8.0, "handle": None, "since": None, "rounds": 0,
                        "remove_at": None}
             for i, img in enumerate(images)}
    by_name = {img.name: img for img in images}
    while True:
        now = time.monotonic()
        for name, st in state.items():
            img: Image = by_name[name]
            h = st["handle"]
            if st["remove_at"] is not None and now >= st["remove_at"]:
                # The image stays on the node for a while, as kubelet would keep it, so the
                # completed pull is seen; then it is removed and pulled again.
                puller.remove(img)
                st["remove_at"] = None
                st["next"] = None if args.once else now + 1.0
            elif h is None and st["next"] is not None and now >= st["next"]:
                log(f"pull {img.ref(stack.pull_host)} ({img.total_bytes / MIB:.1f} MiB)")
                st["handle"], st["since"] = puller.start(img), now
            elif h is not None and h.poll() is not None:
                took = now - st["since"]
                if h.returncode == 0:
                    log(f"pulled {img.ref(stack.pull_host)} in {took:.0f} s")
                else:
                    log(f"pull {img.ref(stack.pull_host)} failed after {took:.0f} s")
                st["handle"] = None
                st["rounds"] += 1
                st["remove_at"] = now + args.pause
                st["next"] = None
        if args.once and all(st["rounds"] >= 1 and st["remove_at"] is None
                             for st in state.values()):
            return
        time.sleep(0.5)


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
