"""Process helpers: start a program with its output in a log file, stop it by PID.

Every process the harness starts goes through `Proc`, so each one is stopped by its own PID
(SIGTERM, then SIGKILL after a deadline) and its log is kept next to the other logs of the
test's temporary directory.
"""

import os
import signal as _signal
import socket
import subprocess
import time
from pathlib import Path


class HarnessError(RuntimeError):
    """A component did not start or did not behave; the message names it and its log."""


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Calls predicate() until it returns a true value and returns that value.

    Raises TimeoutError naming `what` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    """Returns a TCP port that was free on `host` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_socket_ready(path):
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def cpu_seconds(pid):
    """User + system CPU time process `pid` has used so far, from /proc, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path, max_bytes=20000):
    """The end of a log file, or a note when it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
        if size > max_bytes:
            data = f"[... {size - max_bytes} bytes cut ...]\n" + data
        return data
    except FileNotFoundError:
        return f"[no log at {path}]"


class Proc:
    """One child process, its output appended to `log_path`.

    The child gets its own session (process group) so `kill()` can also reach helpers it
    forked itself (nginx workers), always by the group id of the process we started.
    """

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.popen = None
        self.started_at = None
        self.returncode = None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        if self.running():
            raise HarnessError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        log.flush()
        try:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True)
        finally:
            log.close()
        self.started_at = time.monotonic()
        self.returncode = None
        return self

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def poll(self):
        return self.popen.poll() if self.popen else None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def wait(self, timeout=None):
        self.returncode = self.popen.wait(timeout=timeout)
        return self.returncode

    def stop(self, timeout=10.0, sig=_signal.SIGTERM):
        """Sends `sig` (SIGTERM) to the PID, waits up to `timeout`, then SIGKILLs the group.

        Returns (exit status, seconds it took to exit after the signal); the status is the
        negative signal number when the process died of a signal, as in subprocess.
        """
        if self.popen is None:
            return None, 0.0
        if self.popen.poll() is not None:
            self.returncode = self.popen.returncode
            return self.returncode, 0.0
        t0 = time.monotonic()
        try:
            os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.returncode = self.popen.wait(timeout=10)
        took = time.monotonic() - t0
        self._log_note(f"stopped: status {self.returncode} after {took:.2f}s")
        return self.returncode, took

    def kill(self):
        """SIGKILLs the process and its process group at once (a crash, not a shutdown)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._kill_group()
        self.returncode = self.popen.wait(timeout=10)
        self._log_note(f"killed: status {self.returncode}")
        return self.returncode

    def _kill_group(self):
        try:
            os.killpg(self.popen.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _log_note(self, text):
        try:
            with open(self.log_path, "a") as f:
                f.write(f"=== {time.strftime('%H:%M:%S')} {self.name} {text}\n")
        except OSError:
            pass

    def log(self):
        return tail(self.log_path, max_bytes=10 ** 9)

    def rss_kib(self):
        """Resident set size of the process from /proc, in KiB (None when it is gone)."""
        try:
            with open(f"/proc/{self.popen.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            return None
        return None

    def ensure_alive(self, what="starting"):
        if self.popen is not None and self.popen.poll() is not None:
            raise HarnessError(
                f"{self.name} exited with status {self.popen.returncode} while {what}; "
                f"log {self.log_path}:\n{tail(self.log_path)}")
