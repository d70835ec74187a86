"""pytest fixtures for Pulltrace's end-to-end tests (run with Debian's /usr/bin/python3).

Fixtures:
  build_dir      Path of the CMake build directory ($PT_BUILD_DIR, else <repo>/build).
  stack          a started harness.Stack (containerd + registry + nginx on free 127.0.0.1
                 ports, in a fresh /tmp dir); configure it per test with
                 @pytest.mark.stack(rate=..., small_rate=..., containerd=False, ...).
  receiver       a started ReportReceiver on the stack (ephemeral port).
  kube           a started fake Kubernetes API server (harness/kubeapi.py) in the stack's
                 directory.
  agent_binary   Path of pulltrace-agent (fails the test if it is not built).
  server_binary  Path of pulltrace-server (fails the test if it is not built).
  cri_available  True when pt-cri-pull is built; in CI (CI=true) a missing binary fails.

The containerd the stack starts is the series $PT_CONTAINERD_VERSION names (1.6, the default,
is the system's; 1.7 and 2.1 are fetched by scripts/containerd-versions.sh when missing).
Tests marked `containerd_independent` do not depend on it.

When a test fails, the tails of every component's log (containerd, registry, nginx, skopeo,
daemons, CRI pulls) are printed with the failure. PT_KEEP_TMP=1 keeps the directories.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Stack, build_dir as _build_dir, find_binary  # noqa: E402
from harness.kubeapi import KubeAPI  # noqa: E402

STACK_START_KEYS = ("containerd", "nginx")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "stack(**kw): arguments for the stack fixture (Stack(...) and "
        "start(containerd=, nginx=))")
    config.addinivalue_line(
        "markers", "containerd_independent: the test's outcome does not depend on containerd's "
        "version (left out of the runs against other containerd series)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


@pytest.fixture(scope="session")
def build_dir():
    return _build_dir()


@pytest.fixture
def stack(request, build_dir):
    marker = request.node.get_closest_marker("stack")
    kw = dict(marker.kwargs) if marker else {}
    start_kw = {k: kw.pop(k) for k in STACK_START_KEYS if k in kw}
    s = Stack(build=build_dir, **kw)
    s.start(**start_kw)
    yield s
    if _failed(request):
        print(f"\n===== e2e logs ({s.dir}) =====")
        print(s.dump_logs())
        for r in s.receivers:
            print(f"----- receiver {r.url}: {len(r.reports)} reports, "
                  f"{len(r.attempts)} requests -----")
            for rep in r.reports[-3:]:
                print(rep)
    s.close()


@pytest.fixture
def receiver(stack):
    return stack.receiver()


@pytest.fixture
def kube(stack):
    api = KubeAPI(stack.dir / "kubeapi").start()
    yield api
    api.close()


def _built(build_dir, name):
    p = find_binary(name, build_dir, required=False)
    if p is None:
        pytest.fail(f"{name} is not built in {build_dir}")
    return p


@pytest.fixture(scope="session")
def agent_binary(build_dir):
    return _built(build_dir, "pulltrace-agent")


@pytest.fixture(scope="session")
def server_binary(build_dir):
    return _built(build_dir, "pulltrace-server")


@pytest.fixture
def cri_available(stack):
    if stack.cri.available():
        return True
    if os.environ.get("CI") == "true":
        pytest.fail(f"{stack.cri.binary} is not built")
    pytest.skip(f"{stack.cri.binary} is not built")
