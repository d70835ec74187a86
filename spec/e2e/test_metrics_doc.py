"""docs/metrics.md against what /metrics really exposes.

The real server runs with TLS on its API port (the TLS families), a data directory (the
history's families) and a policy directory that first fails to load (so the load-error
family appears) and is then replaced by a script whose rate hook fails (so the hook-error
family appears); agent reports drive the hooks. The families of both scrapes are compared
with the reference table: the same families, the same types, the same label names, and for
every label the table lists values for, exactly those values."""
# ctest: TIMEOUT=120

import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness import Server, reports, wait_until
from harness.pki import CA

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
TOKEN = "metrics-doc"

ROW = re.compile(r"^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \| (\w+) \|([^|]*)\|")
TYPE = re.compile(r"^# TYPE (\S+) (\S+)$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented():
    """{family: (type, {label: set of values or None for open values})} from the table of
    the "Reference" section."""
    text = DOC.read_text()
    section = text[text.index("## Reference"):]
    out = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        name, mtype, labels = m.group(1), m.group(2), m.group(3).strip()
        spec = {}
        for part in filter(None, (p.strip() for p in labels.split(";"))):
            lm = re.fullmatch(r"`([a-zA-Z_][a-zA-Z0-9_]*)`(?::\s*(.*))?", part)
            assert lm, f"{name}: cannot read the labels column part {part!r}"
            values = None
            if lm.group(2) is not None:
                values = set(re.findall(r"`([^`]*)`", lm.group(2)))
                assert values, f"{name}: label {lm.group(1)} lists no values"
            spec[lm.group(1)] = values
        assert name not in out, f"{name} is listed twice"
        out[name] = (mtype, spec)
    assert out, "no table rows found"
    return out


def exposed(text, into):
    """Adds the families of one scrape to `into`: {family: (type, {label: values})}."""
    types = {}
    for line in text.splitlines():
        m = TYPE.match(line)
        if m:
            types[m.group(1)] = m.group(2)
            into.setdefault(m.group(1), (m.group(2), {}))
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"unreadable sample line {line!r}"
        name = m.group(1)
        family = name
        if name not in types:
            family = next(name[:-len(s)] for s in HISTOGRAM_SUFFIXES
                          if name.endswith(s) and types.get(name[:-len(s)]) == "histogram")
        labels = into[family][1]
        for k, v in LABEL.findall(m.group(2) or ""):
            if types[family] == "histogram" and k == "le":
                continue
            labels.setdefault(k, set()).add(v)
    return into


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="pt-metrics-doc-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_metrics_reference_matches_the_exposition(server_binary, workdir):
    policy = workdir / "policy"
    policy.mkdir()
    (workdir / "data").mkdir()
    (policy / "zz-doc.lua").write_text("local broken = \n")
    ca = CA(workdir / "pki")
    srv = Server(server_binary, workdir / "server.log", token=TOKEN, tls=(*ca.issue(), ca.cert),
                 env={"PULLTRACE_KUBERNETES": "off", "PULLTRACE_POLICY_DIR": str(policy),
                      "PULLTRACE_DATA_DIR": str(workdir / "data")}).start()
    try:
        seen = {}
        now = time.time()

        def post(seq, downloaded, completed=False, pull_id="p1"):
            layer = reports.layer(reports.sha256(1), 1000, downloaded)
            pull = reports.pull(pull_id, "127.0.0.1/doc/app", reports.sha256(2), [layer],
                                started=now, completed=time.time() if completed else None)
            r = srv.post(reports.report("doc-node", seq, [pull]))
            assert r.status_code == 200, r.text

        post(1, 100)
        post(2, 1000, completed=True)
        first = srv.metrics()
        assert first.value("pulltrace_policy_load_error", {
            "script": "zz-doc.lua", "line": "2", "message": "unexpected symbol near <eof>"}) == 1
        exposed(first.text, seen)

        # A working script whose rate hook fails: the hook-error family appears.
        (policy / "zz-doc.lua").write_text('pulltrace.rate(function() error("no rate") end)\n')
        wait_until(lambda: srv.metric("pulltrace_policy_defaults_only") == 0, 60,
                   what="the fixed policy reloaded")
        post(3, 10, pull_id="p2")  # a new pull: the rate hook runs
        second = wait_until(lambda: (lambda m: m if m.value("pulltrace_policy_errors_total", {
            "hook": "rate", "script": "zz-doc.lua", "reason": "runtime"}) else None)(srv.metrics()),
            30, what="a rate hook error counted")
        exposed(second.text, seen)
    finally:
        srv.stop()

    doc = documented()
    assert sorted(set(seen) - set(doc)) == [], "exposed but not in docs/metrics.md"
    assert sorted(set(doc) - set(seen)) == [], "in docs/metrics.md but not exposed"
    for name, (mtype, labels) in sorted(doc.items()):
        got_type, got_labels = seen[name]
        assert got_type == mtype, f"{name}: exposed as {got_type}, documented as {mtype}"
        assert set(got_labels) == set(labels), \
            f"{name}: labels {sorted(got_labels)} exposed, {sorted(labels)} documented"
        for label, values in labels.items():
            if values is not None:
                assert got_labels[label] == values, \
                    f"{name}{{{label}}}: values {sorted(got_labels[label])} exposed, " \
                    f"{sorted(values)} documented"
