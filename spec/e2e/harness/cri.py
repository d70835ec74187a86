"""kubelet's part in a pull: CRI `PullImage` / `RemoveImage` on containerd's socket, through
the project's own small gRPC client `pt-cri-pull` (built at <build>/spec/tools/pt-cri-pull)."""

import itertools
import os
import subprocess
from pathlib import Path

from .proc import HarnessError

_seq = itertools.count(1)


def build_dir():
    """The CMake build directory: $PT_BUILD_DIR, else <repo>/build."""
    env = os.environ.get("PT_BUILD_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "build"


def cri_pull_binary(build=None):
    """Path of pt-cri-pull: $PT_CRI_PULL, else <build>/spec/tools/pt-cri-pull."""
    env = os.environ.get("PT_CRI_PULL")
    if env:
        return Path(env)
    return Path(build or build_dir()) / "spec" / "tools" / "pt-cri-pull"


class CriPull(subprocess.Popen):
    """A background `pt-cri-pull`: a Popen whose stdout/stderr go to files in the log dir."""

    def __init__(self, argv, out_path, err_path, image):
        self.image = image
        self.out_path = Path(out_path)
        self.err_path = Path(err_path)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            super().__init__(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    @property
    def stdout_text(self):
        return self.out_path.read_text(errors="replace")

    @property
    def stderr_text(self):
        return self.err_path.read_text(errors="replace")

    def result(self, timeout=None):
        """Waits for the pull; returns a CompletedProcess with its output."""
        rc = self.wait(timeout=timeout)
        return subprocess.CompletedProcess(self.args, rc, self.stdout_text, self.stderr_text)

    def stop(self, timeout=5):
        """Ends the client by its PID (SIGTERM, then SIGKILL). containerd may go on
        pulling: a cancelled CRI call does not always cancel the fetch."""
        if self.poll() is None:
            self.terminate()
            try:
                self.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
        return self.returncode


class Cri:
    """CRI calls on one containerd socket; outputs are kept under `logdir`."""

    def __init__(self, socket, logdir, binary=None):
        self.socket = str(socket)
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.binary = Path(binary) if binary else cri_pull_binary()
        self.background = []

    def available(self):
        return self.binary.is_file() and os.access(self.binary, os.X_OK)

    def _argv(self, timeout, *args):
        if not self.available():
            raise HarnessError(f"{self.binary} is not built (set PT_BUILD_DIR or PT_CRI_PULL)")
        argv = [str(self.binary), "--socket", self.socket]
        if timeout is not None:
            argv += ["--timeout", str(int(timeout))]
        return argv + [str(a) for a in args]

    def pull(self, image, background=False, timeout=None, check=True):
        """CRI PullImage(image).

        background=False: waits and returns a CompletedProcess (stdout is the image ref);
            raises HarnessError on failure unless check=False.
        background=True: returns a CriPull handle (a Popen) at once.
        timeout: passed to pt-cri-pull as --timeout SEC (the CRI call's deadline).
        """
        argv = self._argv(timeout, image)
        n = next(_seq)
        out, err = self.logdir / f"cri-pull-{n}.out", self.logdir / f"cri-pull-{n}.err"
        handle = CriPull(argv, out, err, image)
        if background:
            self.background.append(handle)
            return handle
        wait = None if timeout is None else timeout + 30
        try:
            r = handle.result(timeout=wait)
        except subprocess.TimeoutExpired:
            handle.stop()
            raise HarnessError(f"pt-cri-pull {image} did not return in {wait}s") from None
        if check and r.returncode != 0:
            raise HarnessError(f"CRI PullImage {image} failed ({r.returncode}): "
                               f"{r.stderr.strip()}")
        return r

    def remove(self, image, check=True, timeout=60):
        """CRI RemoveImage(image) through `pt-cri-pull --remove IMAGE`."""
        argv = self._argv(None, "--remove", image)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HarnessError(f"CRI RemoveImage {image} failed ({r.returncode}): "
                               f"{r.stderr.strip()}")
        return r

    def stop_all(self):
        for h in self.background:
            h.stop()
        self.background.clear()
