"""Pulltrace's own daemons (and any other program from the build directory), started with an
environment of our choosing and stopped by PID: SIGTERM, then SIGKILL after a deadline."""

import json
import os
import time
from pathlib import Path

from .cri import build_dir
from .proc import HarnessError, Proc, tail

# Where CMake puts the daemons, most likely first; `find_binary` falls back to a search.
_CANDIDATES = {
    "pulltrace-agent": ["src/agent/pulltrace-agent", "pulltrace-agent", "bin/pulltrace-agent"],
    "pulltrace-server": ["src/server/pulltrace-server", "pulltrace-server",
                         "bin/pulltrace-server"],
    "pt-cri-pull": ["spec/tools/pt-cri-pull"],
}


def find_binary(name, build=None, required=True):
    """Path of the executable `name` in the build directory, or None when not built."""
    build = Path(build or build_dir())
    for rel in _CANDIDATES.get(name, [name]):
        p = build / rel
        if p.is_file() and os.access(p, os.X_OK):
            return p
    for p in sorted(build.rglob(name)):
        if p.is_file() and os.access(p, os.X_OK) and "CMakeFiles" not in p.parts:
            return p
    if required:
        raise HarnessError(f"{name} not found in {build}; build it first "
                           f"(cmake --build {build})")
    return None


class Daemon:
    """A program started with `env` added to a clean base environment, output in `log_path`."""

    def __init__(self, name, binary, log_path, args=(), env=None, inherit_env=False):
        self.name = name
        self.binary = Path(binary)
        base = dict(os.environ) if inherit_env else {
            k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ", "ASAN_OPTIONS",
                                       "UBSAN_OPTIONS", "LSAN_OPTIONS") if k in os.environ}
        # Leftover PULLTRACE_* settings of the caller must not leak into a test.
        base = {k: v for k, v in base.items() if not k.startswith("PULLTRACE_")}
        self.env = dict(base, **{k: str(v) for k, v in (env or {}).items()})
        self.argv = [str(self.binary), *[str(a) for a in args]]
        self.proc = Proc(name, self.argv, log_path, env=self.env)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def log_path(self):
        return self.proc.log_path

    def start(self, ready=None, timeout=10.0):
        """Starts the program; with `ready` (a callable), waits until it returns true."""
        self.proc.start()
        if ready is not None:
            deadline = time.monotonic() + timeout
            while not ready():
                self.proc.ensure_alive("starting")
                if time.monotonic() > deadline:
                    raise HarnessError(f"{self.name} not ready after {timeout}s; log:\n"
                                       f"{tail(self.log_path)}")
                time.sleep(0.05)
        return self

    def stop(self, timeout=5.0, sig=None):
        """SIGTERM (or `sig`), SIGKILL after `timeout`; returns (status, seconds taken)."""
        if sig is None:
            return self.proc.stop(timeout=timeout)
        return self.proc.stop(timeout=timeout, sig=sig)

    def kill(self):
        return self.proc.kill()

    def running(self):
        return self.proc.running()

    def wait(self, timeout=None):
        return self.proc.wait(timeout=timeout)

    def log(self):
        return self.proc.log()

    def log_lines(self):
        return self.log().splitlines()

    def log_json(self):
        """The JSON log lines (the daemons' default log format), parsed; other lines skipped."""
        out = []
        for line in self.log_lines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def rss_kib(self):
        return self.proc.rss_kib()


def run_binary(binary, args=(), env=None, timeout=30):
    """Runs a build-dir program to completion (e.g. `--help`); returns CompletedProcess."""
    import subprocess
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULLTRACE_")}
    return subprocess.run([str(binary), *[str(a) for a in args]], capture_output=True,
                          text=True, env=dict(base, **(env or {})), timeout=timeout)
