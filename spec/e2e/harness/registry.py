"""A private docker-registry (distribution 2.8) with filesystem storage, and nginx in front
of it to slow pulls down."""

import os
import re
import signal
from pathlib import Path

import requests

from .proc import HarnessError, Proc, port_open, tail, wait_until

DOCKER_REGISTRY = "/usr/bin/docker-registry"
NGINX = "/usr/sbin/nginx"


def _http_ok(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _start_serving(proc, url, timeout, what, log_path):
    """Starts `proc` and waits until `url`/v2/ answers; a failure shows the log's tail."""
    proc.start()

    def ready():
        proc.ensure_alive("starting")
        return _http_ok(url + "/v2/")

    try:
        wait_until(ready, timeout, what=what)
    except TimeoutError as e:
        raise HarnessError(f"{e}; log {log_path}:\n{tail(log_path)}") from None


class _Local:
    """A component listening on 127.0.0.1:`self.port`."""

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.host}"


class Registry(_Local):
    """`docker-registry serve CONFIG` on 127.0.0.1:`port`, storing blobs under `workdir`."""

    def __init__(self, workdir, port=5000):
        self.dir = Path(workdir)
        self.port = port
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        self.storage = self.dir / "storage"
        self.proc = None

    def write_config(self):
        self.storage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{self.port}
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
""")

    def start(self, timeout=20.0):
        self.write_config()
        if port_open(self.port):
            raise HarnessError(f"port 127.0.0.1:{self.port} is already in use (registry)")
        # The registry reads proxy settings from the environment; keep it plain.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.proc = Proc("docker-registry", [DOCKER_REGISTRY, "serve", self.config_path],
                         self.log_path, env=env)
        _start_serving(self.proc, self.url, timeout, "docker-registry /v2/", self.log_path)
        return self

    def stop(self, timeout=10.0):
        return self.proc.stop(timeout=timeout)[0] if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.running()

    def manifest(self, name, reference, accept=None):
        """GET /v2/NAME/manifests/REFERENCE; returns (digest header, bytes, content type)."""
        accept = accept or ", ".join([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json"])
        r = requests.get(f"{self.url}/v2/{name}/manifests/{reference}",
                         headers={"Accept": accept}, timeout=10)
        r.raise_for_status()
        return (r.headers.get("Docker-Content-Digest"), r.content,
                r.headers.get("Content-Type"))

    def has_blob(self, name, digest):
        r = requests.head(f"{self.url}/v2/{name}/blobs/{digest}", timeout=10)
        return r.status_code == 200


class Nginx(_Local):
    """nginx-light on 127.0.0.1:`port` proxying to `upstream_port`, throttling downloads.

    rate: bytes per second per connection for every response (0 = unlimited).
    small_rate: if set, a different per-connection rate for responses whose upstream
        Content-Length has at most `small_max_digits` digits (below 10**digits bytes), e.g.
        rate=0, small_rate=2000 slows only manifests and configs so their ingests show.
    `proxy_buffering on` is what makes limit_rate apply to proxied responses. nginx sends the
    first second's worth of a response at once, so a rate only slows responses larger than
    it (a 400-byte manifest needs small_rate=100 or so, and then takes several seconds).
    """

    def __init__(self, workdir, port=5001, upstream_port=5000, rate=0, small_rate=None,
                 small_max_digits=5):
        self.dir = Path(workdir)
        self.port = port
        self.upstream_port = upstream_port
        self.rate = int(rate)
        self.small_rate = small_rate
        self.small_max_digits = int(small_max_digits)
        self.config_path = self.dir / "nginx.conf"
        self.log_path = self.dir / "nginx.log"
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.pid_path = self.dir / "nginx.pid"
        self.proc = None

    def write_config(self):
        d = self.dir
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        if self.small_rate is not None:
            rate_map = (
                "  map $upstream_http_content_length $pt_limit_rate {\n"
                f"    default {self.rate};\n"
                f"    \"~^[0-9]{{1,{self.small_max_digits}}}$\" {int(self.small_rate)};\n"
                "  }\n")
        else:
            rate_map = (
                "  map $upstream_http_content_length $pt_limit_rate {\n"
                f"    default {self.rate};\n"
                "  }\n")
        # As root, workers would switch to an unprivileged user that cannot enter the
        # private (0700) temporary directory where the proxy buffers its temp files.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(f"""# Generated by the Pulltrace e2e harness.
{user}daemon off;
master_process on;
worker_processes 1;
pid {self.pid_path};
error_log {self.error_log} info;

events {{
  worker_connections 512;
}}

http {{
  access_log {self.access_log};
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
{rate_map}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{self.upstream_port};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_buffering on;
      proxy_read_timeout 300s;
      limit_rate $pt_limit_rate;
    }}
  }}
}}
""")

    def start(self, timeout=15.0):
        self.write_config()
        if port_open(self.port):
            raise HarnessError(f"port 127.0.0.1:{self.port} is already in use (nginx)")
        self.proc = Proc("nginx", [NGINX, "-e", self.error_log, "-p", self.dir, "-c",
                                   self.config_path], self.log_path)
        _start_serving(self.proc, self.url, timeout, "nginx to proxy /v2/", self.error_log)
        return self

    def stop(self, timeout=10.0):
        """Orderly: SIGTERM is nginx's fast shutdown (drops connections)."""
        return self.proc.stop(timeout=timeout)[0] if self.proc else None

    def kill(self):
        """SIGKILLs the master and its workers (its process group): pulls break mid-way.

        containerd then fails the pull at once and, when the client's lease goes, deletes
        the partial ingest: it is not left listed (use freeze() for a stalled download).
        """
        if self.proc is None:
            return None
        if self.proc.running():
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)  # a frozen group must die too
            except ProcessLookupError:
                pass
        return self.proc.kill()

    def freeze(self):
        """SIGSTOPs nginx (master and workers): connections stay open but no byte moves, so
        containerd's ingests stay listed with a frozen offset and `updated_at` (a stall)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self):
        """SIGCONTs a frozen nginx; the downloads go on where they stopped."""
        os.killpg(self.proc.pid, signal.SIGCONT)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def restart(self, **changes):
        """Stops (if running) and starts again, optionally with a new rate/small_rate."""
        if self.running():
            self.stop()
        for k, v in changes.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown nginx setting {k}")
            setattr(self, k, v)
        return self.start()

    def set_rate(self, rate=None, small_rate=None):
        """Changes the throttle with a reload (SIGHUP); running downloads keep the old one."""
        if rate is not None:
            self.rate = int(rate)
        if small_rate is not None:
            self.small_rate = small_rate
        self.write_config()
        self.proc.send_signal(1)

    def running(self):
        return self.proc is not None and self.proc.running()

    def requests_for(self, pattern):
        """Access-log lines whose request matches the regex `pattern`."""
        try:
            lines = self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        rx = re.compile(pattern)
        return [line for line in lines if rx.search(line)]
