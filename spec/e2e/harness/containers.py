"""Containers run from an image on the private containerd with `ctr run` (runc), the way a
kubelet would run them: detached, with the securityContext given as ctr's flags, output to a
log file each. Every task is stopped by `close()` (SIGTERM, then SIGKILL), its container and
snapshot removed; if containerd is gone by then, the task and its shim are killed by PID."""

import json
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .proc import HarnessError, wait_until

# containerd's default capability set (oci.WithDefaultSpec). ctr takes no "ALL", so
# `drop: [ALL]` is these, each dropped by name; tests check that none is left.
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")


@dataclass
class SecurityContext:
    """The parts of a Kubernetes securityContext this harness maps onto `ctr run`.

    user: "UID:GID", or None for the image's own USER. Capabilities are all dropped
    (`drop: [ALL]`) but `cap_add`; seccomp is the runtime's default profile (RuntimeDefault)."""
    user: str = None
    read_only_root: bool = True
    cap_add: list = field(default_factory=list)


@dataclass
class Container:
    id: str
    log_path: Path
    pid: int = None       # the task's init process, on the host
    shim_pid: int = None  # its containerd-shim, the task's parent
    scratch: str = None   # with a user of its own: the container holding its snapshot
    rootfs: Path = None   # ... mounted here as the root

    def proc_status(self):
        """/proc/<pid>/status of the task as {key: value}."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        return out

    def alive(self):
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False


class Containers:
    """`ctr run -d` on one containerd (a harness.Containerd); `logdir` holds the logs."""

    def __init__(self, containerd, logdir):
        self.containerd = containerd
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.running = []

    def run(self, image, cid, argv, env=None, security=None, mounts=(), net_host=True):
        """Starts `argv` in a new container `cid` from `image` (already pulled).

        mounts: (host_dir, container_dir, read_only) bind mounts of directories, not
        recursive. Returns the Container with the task's PIDs once it runs."""
        security = security or SecurityContext()
        log_path = self.logdir / f"{cid}.log"
        args = ["--seccomp"]
        for cap in DEFAULT_CAPS:
            args += ["--cap-drop", cap]
        for cap in security.cap_add:
            args += ["--cap-add", cap]
        if security.read_only_root:
            args.append("--read-only")
        if net_host:
            args.append("--net-host")
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        for src, dst, ro in mounts:
            args += ["--mount", f"type=bind,src={src},dst={dst},options=bind:{'ro' if ro else 'rw'}"]
        c = Container(cid, log_path)
        self.running.append(c)
        if security.user:
            args = ["--config", self._spec_with_user(c, image, args, argv, security)]
            image, argv = None, ()
        self.containerd.ctr("run", "-d", "--log-uri", f"file://{log_path}", *args,
                            *([image] if image else []), cid, *argv)
        c.pid = wait_until(lambda: self.task_pid(cid), 20, what=f"task {cid} to run")
        with open(f"/proc/{c.pid}/status") as f:
            c.shim_pid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        return c

    def _spec_with_user(self, c, image, args, argv, security):
        """ctr (1.6) has no --user, and `ctr run --config SPEC` takes neither an image nor
        flags. So containerd writes the OCI spec for `args` (seccomp profile included) into
        a scratch container, whose snapshot is mounted as the root; the spec gets that root
        and the user `UID:GID` and is what `ctr run --config` runs."""
        c.scratch = f"{c.id}-spec"
        self.containerd.ctr("containers", "create", *args, image, c.scratch, *argv)
        spec = json.loads(self.containerd.ctr("containers", "info", c.scratch).stdout)["Spec"]
        c.rootfs = self.logdir / f"{c.id}.rootfs"
        c.rootfs.mkdir()
        mount = self.containerd.ctr("snapshots", "mounts", c.rootfs, c.scratch).stdout
        subprocess.run(shlex.split(mount), check=True, capture_output=True, timeout=30)
        uid, gid = (int(x) for x in security.user.split(":"))
        spec["process"]["user"] = {"uid": uid, "gid": gid}
        spec["root"] = {"path": str(c.rootfs), "readonly": security.read_only_root}
        path = self.logdir / f"{c.id}.spec.json"
        path.write_text(json.dumps(spec, indent=1))
        return str(path)

    def tasks(self):
        """{container id: (pid, status)} from `ctr task ls`."""
        r = self.containerd.ctr("tasks", "ls")
        out = {}
        for line in r.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = (int(parts[1]), parts[2])
        return out

    def task_pid(self, cid):
        pid, status = self.tasks().get(cid, (0, ""))
        return pid if status == "RUNNING" and pid > 0 else None

    def log(self, c):
        try:
            return c.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, c, timeout=10.0):
        """SIGTERM, SIGKILL after `timeout`; then the task, container and snapshot go."""
        if self.containerd.running():
            self.containerd.ctr("tasks", "kill", "--signal", "SIGTERM", c.id, check=False)
            try:
                wait_until(lambda: not c.alive(), timeout, what=f"{c.id} to exit")
            except TimeoutError:
                self.containerd.ctr("tasks", "kill", "--signal", "SIGKILL", c.id, check=False)
                wait_until(lambda: not c.alive(), 10, what=f"{c.id} to die")
            # The shim reports the exit asynchronously; delete may need a moment.
            wait_until(lambda: c.id not in self.tasks() or self.containerd.ctr(
                "tasks", "delete", c.id, check=False).returncode == 0, 10, interval=0.2,
                what=f"task {c.id} to be deleted")
            self.containerd.ctr("containers", "delete", c.id, check=False)
        else:
            for pid in (c.pid, c.shim_pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, TypeError):
                    pass
        if c.rootfs:
            subprocess.run(["umount", str(c.rootfs)], capture_output=True, timeout=30)
            if self.containerd.running():
                self.containerd.ctr("containers", "delete", c.scratch, check=False)
        self.running.remove(c)

    def close(self):
        errors = []
        for c in reversed(list(self.running)):
            try:
                self.stop(c)
            except (HarnessError, TimeoutError, subprocess.SubprocessError) as e:
                errors.append(e)
        if errors:
            raise HarnessError(f"stopping containers: {errors}")

