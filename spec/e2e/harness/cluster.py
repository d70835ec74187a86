"""A small cluster on one machine, for the demo: nodes beside the stack's own, each with its
own containerd (root, state and socket of its own), its own throttling nginx in front of the
stack's registry, and its own pulltrace-agent with its own node name.

Every node pulls the same references as the stack's node (`<stack.pull_host>/repo:tag`), so
the server sees one image rolling out across the nodes: each containerd's
`certs.d/<pull_host>/hosts.toml` sends the pulls of that host to the node's own nginx first, as
a registry mirror per node would. A node's rate is its nginx's; `freeze()` stalls the node's
downloads (nginx SIGSTOPped, the connections stay open) until `thaw()`.
"""

from .containerd import Containerd
from .cri import Cri
from .registry import Nginx
from .proc import free_port


class ClusterNode:
    def __init__(self, stack, name, rate):
        self.stack = stack
        self.name = name
        self.rate = int(rate)
        d = stack.dir / "nodes" / name
        self.nginx = Nginx(d / "nginx", port=free_port(), upstream_port=stack.registry.port,
                           rate=self.rate)
        self.containerd = Containerd(d / "containerd", snapshotter=stack.containerd.snapshotter)
        self.cri = Cri(self.containerd.socket, d / "cri", binary=stack.cri.binary)
        self.agent = None
        self.frozen = False

    def _write_mirror(self):
        """Pulls of the stack's registry host go to this node's nginx (plain HTTP)."""
        host = self.stack.pull_host
        hdir = self.containerd.certs_dir / host
        hdir.mkdir(parents=True, exist_ok=True)
        (hdir / "hosts.toml").write_text(
            f'server = "http://{host}"\n\n'
            f'[host."http://{self.nginx.host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n')

    def start(self, server, env=None):
        """Starts nginx, containerd and an agent reporting to `server`; stop() ends them."""
        self.stack.started.append(self)
        self.nginx.start()
        self.containerd.write_config()
        self._write_mirror()
        self.containerd.start()
        full = self.stack.agent_env(server.url, node_name=self.name)
        full["PULLTRACE_CONTAINERD_SOCKET"] = str(self.containerd.socket)
        full.update({k: str(v) for k, v in (env or {}).items()})
        self.agent = self.stack.daemon("pulltrace-agent", env=full)
        return self

    def pull(self, ref, timeout=900):
        """A background CRI PullImage of `ref` on this node (a CriPull handle)."""
        return self.cri.pull(ref, background=True, timeout=timeout)

    def finished(self, handle):
        if handle in self.cri.background:
            self.cri.background.remove(handle)
        return "" if handle.returncode == 0 else handle.stderr_text.strip()

    def remove(self, ref):
        return self.cri.remove(ref, check=False)

    def freeze(self):
        if not self.frozen:
            self.nginx.freeze()
            self.frozen = True

    def thaw(self):
        if self.frozen:
            self.nginx.thaw()
            self.frozen = False

    def stop(self):
        """Stops what start() started (the agent is one of the stack's daemons)."""
        self.cri.stop_all()
        if self.nginx.running():
            self.thaw()
        errors = []
        for step in (self.containerd.stop, self.nginx.stop):
            try:
                step()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        if not self.containerd.running():
            self.containerd.cleanup()
        if errors:
            raise errors[0]
