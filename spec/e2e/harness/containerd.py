"""A private containerd daemon with the CRI plugin: Debian bookworm's 1.6, or the 1.7 and 2.1
that clusters run, fetched by scripts/containerd-versions.sh (see `containerd_bin_dir`).

Everything lives in the daemon's own directory: root, state, sockets, the CRI registry
`certs.d` and empty CNI directories, so it never touches a system containerd.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .proc import HarnessError, Proc, tail, unix_socket_ready, wait_until

SYSTEM_BIN = Path("/usr/bin")
NAMESPACE = "k8s.io"
SERIES = ("1.6", "1.7", "2.1")
FETCH_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "containerd-versions.sh"


def containerd_bin_dir(series=None):
    """The directory holding containerd, its runc shim and ctr for a series ("1.6", "1.7",
    "2.1"; default: $PT_CONTAINERD_VERSION, else 1.6). 1.6 is the system's /usr/bin; the
    others are fetched into a cache by scripts/containerd-versions.sh when missing."""
    series = series or os.environ.get("PT_CONTAINERD_VERSION") or "1.6"
    if series not in SERIES:
        raise HarnessError(f"unknown containerd series {series!r} (known: {', '.join(SERIES)})")
    if series == "1.6":
        return SYSTEM_BIN
    r = subprocess.run([str(FETCH_SCRIPT), "path", series], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise HarnessError(f"containerd {series} could not be fetched: {r.stderr.strip()}")
    return Path(r.stdout.strip().splitlines()[-1])


def containerd_version(bin_dir):
    """(major, minor, patch) of the containerd in `bin_dir`, from `containerd --version`."""
    r = subprocess.run([str(Path(bin_dir) / "containerd"), "--version"], capture_output=True,
                       text=True, timeout=30)
    m = re.search(r" v?(\d+)\.(\d+)\.(\d+)", r.stdout)
    if r.returncode != 0 or not m:
        raise HarnessError(f"{bin_dir}/containerd --version: {r.stdout}{r.stderr}".strip())
    return tuple(int(x) for x in m.groups())


def _toml_str(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Containerd:
    """containerd running as root in `workdir`.

    `mirrors` are registry hosts ("127.0.0.1:5001") that the CRI plugin pulls from over plain
    HTTP, through a `certs.d/<host>/hosts.toml` each. `bin_dir` holds containerd, its shim and
    ctr (default: `containerd_bin_dir()`, the series $PT_CONTAINERD_VERSION names).
    `layer_chunk` (bytes, containerd 2.1 and later) makes it fetch a layer in chunks of that
    size over parallel connections, as an operator can configure it
    (`concurrent_layer_fetch_buffer`); None keeps the default, one request per layer.
    """

    def __init__(self, workdir, mirrors=(), snapshotter="overlayfs", log_level="info",
                 bin_dir=None, layer_chunk=None):
        self.dir = Path(workdir)
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.socket = self.dir / "containerd.sock"
        self.ttrpc_socket = self.dir / "containerd.sock.ttrpc"
        self.debug_socket = self.dir / "debug.sock"
        self.certs_dir = self.dir / "certs.d"
        self.config_path = self.dir / "config.toml"
        self.log_path = self.dir / "containerd.log"
        self.snapshotter = snapshotter
        self.log_level = log_level
        self.mirrors = list(mirrors)
        self.bin_dir = Path(bin_dir) if bin_dir else containerd_bin_dir()
        self.binary = self.bin_dir / "containerd"
        self.ctr_binary = self.bin_dir / "ctr"
        self.version = containerd_version(self.bin_dir)
        if layer_chunk and self.version < (2, 1):
            raise HarnessError(f"containerd {self.version_text} fetches a layer in one request "
                               "(parallel chunks came in 2.1)")
        self.layer_chunk = layer_chunk
        self.proc = None
        self.namespace = NAMESPACE

    @property
    def version_text(self):
        return ".".join(map(str, self.version))

    # -- configuration -------------------------------------------------------------------
    def write_config(self):
        for d in (self.root, self.state, self.certs_dir, self.dir / "cni/bin",
                  self.dir / "cni/net.d", self.dir / "opt"):
            d.mkdir(parents=True, exist_ok=True)
        for host in self.mirrors:
            self.add_plain_http_host(host)
        d = self.dir
        # containerd 2.x reads (and 1.x does not know) configuration version 3, where the CRI
        # plugin is split into an images and a runtime plugin.
        v3 = self.version[0] >= 2
        cfg = f"""version = {3 if v3 else 2}
root = {_toml_str(self.root)}
state = {_toml_str(self.state)}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = {_toml_str(self.socket)}

[ttrpc]
  address = {_toml_str(self.ttrpc_socket)}

[debug]
  address = {_toml_str(self.debug_socket)}
  level = {_toml_str(self.log_level)}

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(d / "opt")}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        if v3:
            cfg += f"""
# NRI is on by default in 2.x, with a socket in the system's /var/run/nri.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [{_toml_str(d / "cni/bin")}]
  conf_dir = {_toml_str(d / "cni/net.d")}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = {_toml_str(self.snapshotter)}
"""
            if self.layer_chunk:
                # CRI pulls through the transfer service since 2.0; both carry the setting.
                cfg += f"""  concurrent_layer_fetch_buffer = {int(self.layer_chunk)}
  max_concurrent_downloads = 3

[plugins."io.containerd.transfer.v1.local"]
  concurrent_layer_fetch_buffer = {int(self.layer_chunk)}
  max_concurrent_downloads = 3
"""
            cfg += f"""
[plugins."io.containerd.cri.v1.images".registry]
  config_path = {_toml_str(self.certs_dir)}
"""
        else:
            cfg += f"""  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = {_toml_str(self.snapshotter)}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {_toml_str(d / "cni/bin")}
  conf_dir = {_toml_str(d / "cni/net.d")}

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = {_toml_str(self.certs_dir)}
"""
        self.config_path.write_text(cfg)

    def add_plain_http_host(self, host):
        """Lets CRI pull from `host` (e.g. "127.0.0.1:5001") over plain HTTP."""
        hdir = self.certs_dir / host
        hdir.mkdir(parents=True, exist_ok=True)
        (hdir / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n'
            f'[host."http://{host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n')
        if host not in self.mirrors:
            self.mirrors.append(host)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout=30.0):
        if not self.config_path.exists():
            self.write_config()
        # containerd finds its runc shim on PATH: its own version's, next to it.
        env = dict(os.environ, PATH=f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        self.proc = Proc("containerd", [self.binary, "--config", self.config_path],
                         self.log_path, env=env)
        self.proc.start()

        def ready():
            self.proc.ensure_alive("booting")
            if not unix_socket_ready(self.socket):
                return False
            # The socket listens before every plugin is loaded; wait until the CRI plugin
            # answers as well, since tests pull through it.
            r = subprocess.run(self.ctr_argv("plugins", "ls"), capture_output=True,
                               text=True, timeout=10)
            if r.returncode != 0:
                return False
            return any("io.containerd.grpc.v1" in line and "cri" in line.split()
                       and line.split()[-1] == "ok" for line in r.stdout.splitlines())

        try:
            wait_until(ready, timeout, interval=0.1, what="containerd to serve CRI")
        except TimeoutError as e:
            raise HarnessError(f"{e}; log {self.log_path}:\n{tail(self.log_path)}") from None
        return self

    def stop(self, timeout=15.0):
        if self.proc is None:
            return None
        status, _ = self.proc.stop(timeout=timeout)
        return status

    def kill(self):
        return self.proc.kill() if self.proc else None

    def restart(self, down_for=0.0, timeout=30.0):
        """Stops containerd, optionally stays down `down_for` seconds, and starts it again
        with the same root, so content and half-finished ingests survive."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        return self.start(timeout=timeout)

    def running(self):
        return self.proc is not None and self.proc.running()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # -- ctr helpers ---------------------------------------------------------------------
    def ctr_argv(self, *args, namespace=None):
        return [str(self.ctr_binary), "--address", str(self.socket), "--namespace",
                namespace or self.namespace, *[str(a) for a in args]]

    def ctr(self, *args, check=True, timeout=120, namespace=None):
        """Runs ctr against this daemon; returns the CompletedProcess (text)."""
        r = subprocess.run(self.ctr_argv(*args, namespace=namespace), capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HarnessError(f"ctr {' '.join(map(str, args))} failed ({r.returncode}): "
                               f"{r.stderr.strip()}")
        return r

    def ctr_pull_argv(self, ref, plain_http=True):
        argv = self.ctr_argv("images", "pull")
        if plain_http:
            argv.append("--plain-http")
        return argv + [ref]

    def ctr_pull(self, ref, background=False, log_path=None, timeout=300):
        """Pulls with `ctr images pull --plain-http` (containerd's own client, not CRI).

        In the background it returns a Popen whose output goes to `log_path`.
        """
        argv = self.ctr_pull_argv(ref)
        if background:
            log = open(log_path or (self.dir / "ctr-pull.log"), "ab")
            try:
                return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            finally:
                log.close()
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def image_names(self):
        r = self.ctr("images", "ls", "-q")
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]

    def remove_image(self, ref):
        """Removes the image record and waits for the garbage collector (`ctr rm --sync`)."""
        return self.ctr("images", "rm", "--sync", ref, check=False)

    def content_digests(self):
        """Digests of the committed blobs in the content store."""
        r = self.ctr("content", "ls", "-q")
        return {line.strip() for line in r.stdout.splitlines() if line.strip()}

    def active_ingests(self):
        """Refs of the ingests in progress (`ctr content active`)."""
        r = self.ctr("content", "active")
        lines = r.stdout.splitlines()[1:]
        return [line.split()[0] for line in lines if line.strip()]

    def ingest_offsets(self):
        """{ref: bytes written} of the ingests on disk (the local content store's
        `ingest/<hash>/{ref,data}` files; exact where `ctr content active` rounds).
        containerd writes in 1 MiB steps, so offsets move by whole MiB mid-download."""
        out = {}
        base = self.root / "io.containerd.content.v1.content" / "ingest"
        if not base.is_dir():
            return out
        for d in base.iterdir():
            try:
                ref = (d / "ref").read_text().strip()
                out[ref.rsplit("/", 1)[-1]] = (d / "data").stat().st_size
            except OSError:
                continue
        return out

    def cleanup(self):
        """Removes root and state (only after stop; overlay mounts are unmounted first)."""
        if self.running():
            raise HarnessError("containerd still running")
        subprocess.run(["umount", "-R", str(self.state)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
