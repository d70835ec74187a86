"""The whole bench in one object: containerd + docker-registry + throttling nginx + image
builder + CRI client, plus report receivers and daemons started on it, all in one temporary
directory and all stopped by `close()` in reverse order."""

import os
import shutil
import tempfile
from pathlib import Path

import requests

from .containerd import Containerd
from .cri import Cri, build_dir
from .daemon import Daemon, find_binary
from .images import Image, ImageBuilder
from .proc import free_port, tail
from .receiver import ReportReceiver
from .server import Server


class Stack:
    """Private e2e components.

    registry_port/nginx_port: fixed ports (the demo uses 5000/5001); None = free ports, so
        tests can run beside a demo.
    rate/small_rate/small_max_digits: nginx's per-connection throttle (see `Nginx`).
    snapshotter/layer_chunk: passed to `Containerd`.
    workdir: a directory to use; None = a new one under /tmp (short: socket paths are
        limited to 107 bytes). It is removed by close() unless keep=True or PT_KEEP_TMP=1.
    """

    def __init__(self, workdir=None, registry_port=None, nginx_port=None, rate=0,
                 small_rate=None, small_max_digits=5, build=None, keep=None,
                 snapshotter="overlayfs", layer_chunk=None):
        from .registry import Nginx, Registry
        self.own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="pt-e2e-", dir="/tmp"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep if keep is not None else os.environ.get("PT_KEEP_TMP") == "1"
        self.build_dir = Path(build or build_dir()).resolve()
        self.registry = Registry(self.dir / "registry", port=registry_port or free_port())
        self.nginx = Nginx(self.dir / "nginx", port=nginx_port or free_port(),
                           upstream_port=self.registry.port, rate=rate,
                           small_rate=small_rate, small_max_digits=small_max_digits)
        self.containerd = Containerd(self.dir / "containerd", mirrors=[self.nginx.host],
                                     snapshotter=snapshotter, layer_chunk=layer_chunk)
        self.images = ImageBuilder(self.dir / "images", self.registry.host)
        self.cri = Cri(self.containerd.socket, self.dir / "cri",
                       binary=os.environ.get("PT_CRI_PULL") or
                       self.build_dir / "spec" / "tools" / "pt-cri-pull")
        self.receivers = []
        self.daemons = []
        self.started = []

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, containerd=True, nginx=True):
        """Starts registry, nginx and containerd (the latter two optional)."""
        try:
            self.registry.start()
            self.started.append(self.registry)
            if nginx:
                self.nginx.start()
                self.started.append(self.nginx)
            if containerd:
                self.containerd.start()
                self.started.append(self.containerd)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Stops everything this stack started, newest first, each by its PID."""
        errors = []
        for comp in [*self.cri.background, *reversed(self.daemons), *reversed(self.receivers),
                     *reversed(self.started)]:
            try:
                comp.stop()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        self.started.clear()
        if not self.keep and self.own_dir:
            self.containerd.cleanup() if not self.containerd.running() else None
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- pulls ---------------------------------------------------------------------------
    @property
    def pull_host(self):
        """The registry host as containerd sees it: nginx, e.g. 127.0.0.1:5001."""
        return self.nginx.host

    def ref(self, image):
        """Pull reference through nginx for an Image (strings pass through)."""
        return image.ref(self.pull_host) if isinstance(image, Image) else str(image)

    def cri_pull(self, image, background=False, timeout=None, check=True):
        """CRI PullImage through nginx (see Cri.pull); `image` is an Image or a reference."""
        return self.cri.pull(self.ref(image), background=background, timeout=timeout,
                             check=check)

    def cri_remove(self, image, check=True):
        return self.cri.remove(self.ref(image), check=check)

    def ctr_pull(self, image, background=False):
        """containerd's own client instead of CRI (`ctr images pull --plain-http`)."""
        return self.containerd.ctr_pull(self.ref(image), background=background,
                                        log_path=self.dir / "ctr-pull.log")

    # -- helpers started on the stack ----------------------------------------------------
    def receiver(self, **kw):
        """A started ReportReceiver, stopped by close()."""
        r = ReportReceiver(**kw).start()
        self.receivers.append(r)
        return r

    def _log_path(self, name):
        """logs/<name>.log, then <name>.1.log, ... for further daemons of that name."""
        n = sum(1 for d in self.daemons if d.name == name)
        return self.dir / "logs" / (f"{name}.log" if n == 0 else f"{name}.{n}.log")

    def daemon(self, name, args=(), env=None, binary=None, ready=None, timeout=10.0):
        """Starts build-dir program `name` (e.g. pulltrace-agent) with `env`; stopped by
        close()."""
        binary = binary or find_binary(name, self.build_dir)
        d = Daemon(name, binary, self._log_path(name), args=args, env=env)
        self.daemons.append(d)
        return d.start(ready=ready, timeout=timeout)

    def http_daemon(self, name, binary, args, url, timeout=30.0):
        """Starts a third-party daemon (Prometheus, Alertmanager) that is ready once
        `url`/-/ready answers 200; stopped by close()."""
        def ready():
            try:
                return requests.get(url + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        return self.daemon(name, binary=binary, args=args, ready=ready, timeout=timeout)

    def server(self, env=None, token=None, http_addr=None, metrics_addr=None, binary=None,
               timeout=15.0, tls=None, report=False):
        """A started pulltrace-server (see `Server`), stopped by close()."""
        srv = Server(binary or find_binary("pulltrace-server", self.build_dir),
                     self._log_path("pulltrace-server"), env=env, token=token,
                     http_addr=http_addr, metrics_addr=metrics_addr, tls=tls, report=report)
        self.daemons.append(srv)
        return srv.start(timeout=timeout)

    def agent_env(self, server_url, node_name="e2e-node", **extra):
        """The agent's environment pointed at this stack's containerd and `server_url`."""
        env = {
            "PULLTRACE_NODE_NAME": node_name,
            "PULLTRACE_SERVER_URL": server_url,
            "PULLTRACE_CONTAINERD_SOCKET": str(self.containerd.socket),
            "PULLTRACE_CONTAINERD_NAMESPACE": self.containerd.namespace,
            "PULLTRACE_LOG_LEVEL": "debug",
        }
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def agent(self, server_url, node_name="e2e-node", env=None, args=()):
        """Starts pulltrace-agent reporting to `server_url` (a URL, a ReportReceiver or a
        Server: its report port when it has one)."""
        url = server_url if isinstance(server_url, str) else \
            getattr(server_url, "report_url", server_url.url)
        full = self.agent_env(url, node_name=node_name)
        full.update({k: str(v) for k, v in (env or {}).items()})
        return self.daemon("pulltrace-agent", args=args, env=full)

    # -- diagnostics ---------------------------------------------------------------------
    def log_files(self):
        """Every log the stack's components wrote, by name."""
        files = {
            "containerd": self.containerd.log_path,
            "registry": self.registry.log_path,
            "nginx-error": self.nginx.error_log,
            "nginx-access": self.nginx.access_log,
            "nginx-stdout": self.nginx.log_path,
            "skopeo": self.images.log_path,
        }
        for d in self.daemons:
            files[d.log_path.name] = d.log_path
        if self.cri.logdir.exists():
            for p in sorted(self.cri.logdir.iterdir()):
                files[f"cri/{p.name}"] = p
        ctr_log = self.dir / "ctr-pull.log"
        if ctr_log.exists():
            files["ctr-pull"] = ctr_log
        return files

    def dump_logs(self, max_bytes=8000):
        """Tails of all logs, as one text (printed when a test fails)."""
        out = []
        for name, path in self.log_files().items():
            if Path(path).exists():
                out.append(f"----- {name} ({path}) -----\n{tail(path, max_bytes)}")
        return "\n".join(out)
