"""Every fenced block of the operator pages (docblocks.OPERATOR_PAGES) is checked by its
language, so a command, a values file, a query or a log line the docs show cannot drift from
the chart and the daemons (docs/docs-checks.md):

- sh: `bash -n`; every `helm install|upgrade|template` command is run as `helm template` by
  real Helm against the repository's chart (chart references replaced by chart/pulltrace,
  --set-file paths read from the repository, --version checked against Chart.yaml);
- yaml: a Kubernetes object (apiVersion and kind) must parse; anything else is a values file,
  validated against values.schema.json and rendered by real Helm;
- promql: parsed by `promtool check rules`, and its pulltrace_* names and label values are
  ones the real server exposes;
- json: parses; a log line's msg is a message the daemons' sources log;
- lua: compiles (`luac5.4 -p`); the `-- policy/` examples are also run by unit.policy_reload.

The troubleshooting page's quoted log messages and /readyz details are checked against the
sources too, the alert table of metrics.md against the chart's PrometheusRule, and the
policy's input tables against what the real server hands a script. Links between pages must
name headings that exist (MkDocs 1.4 checks only that the pages do)."""
# ctest: TIMEOUT=600

import json
import re
import shlex
import shutil
import subprocess
import time

import jsonschema
import pytest
import yaml

import chartlib
from harness import reports, wait_until
from chartlib import CHART, REPO, Helm
from docblocks import DOCS, blocks, operator_blocks
# The real server's exposition, and the check the chart's rules and dashboard already pass.
from test_chart import check_queries_against_metrics, real_metrics  # noqa: F401

CHECKED = {"sh", "yaml", "promql", "json", "lua", "text"}
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
LUAC = shutil.which("luac5.4") or "/usr/bin/luac5.4"
HELM_VERSION = "4.1.4"
# Flags that only matter against a cluster or a repository: dropped when rendering.
DROP_FLAG = {"--reuse-values", "--wait", "--atomic", "--create-namespace", "--install"}
DROP_WITH_VALUE = {"--version", "--timeout"}
KEEP_WITH_VALUE = {"--set", "--set-string", "--set-json", "--show-only", "--set-file",
                   "-f", "--values"}


@pytest.fixture(scope="module")
def helm(build_dir, tmp_path_factory):
    return Helm(chartlib.ensure_helm(build_dir, HELM_VERSION), tmp_path_factory.mktemp("helm"))


def ids(found):
    return [b.where() for b in found]


def test_every_block_has_a_checked_language():
    unchecked = [f"{b.where()}: ```{b.lang}" for b in operator_blocks() if b.lang not in CHECKED]
    assert unchecked == [], "blocks without a checker (give them a language, or add one)"


# ---- shell -----------------------------------------------------------------------------------

SH = operator_blocks("sh")


@pytest.mark.parametrize("block", SH, ids=ids(SH))
def test_shell_block_parses(block):
    r = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"{block.where()}: {r.stderr}"


def helm_commands(text):
    """The words of each `helm install|upgrade|template` command of a shell block."""
    for line in text.replace("\\\n", " ").splitlines():
        if not line.strip().startswith("helm "):
            continue
        words = shlex.split(line, comments=True)
        for op in (">", "|", "&&", ";", "&"):
            if op in words:
                words = words[:words.index(op)]
        if words[1] in ("install", "upgrade", "template"):
            yield words


HELM = [(b, w) for b in SH for w in helm_commands(b.text)]


def as_template(words, tmp_path):
    """(release, namespace, args) of `helm template` for a documented helm command."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    positional, args, namespace = [], [], "default"
    rest = words[2:]
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-n", "--namespace"):
            namespace = rest[i + 1]
            i += 2
        elif a in DROP_FLAG:
            i += 1
        elif a in DROP_WITH_VALUE:
            assert a != "--version" or rest[i + 1] in (version, "NEW"), \
                f"--version {rest[i + 1]}: the chart is {version}"
            i += 2
        elif a in KEEP_WITH_VALUE:
            value = rest[i + 1]
            if a == "--set-file":
                key, path = value.split("=", 1)
                assert (REPO / path).is_file(), f"--set-file names {path}, not in the repository"
                value = f"{key}={REPO / path}"
            elif a in ("-f", "--values"):
                # A file of the reader's own (their release's values): rendered empty here.
                empty = tmp_path / "reader-values.yaml"
                empty.write_text("{}\n")
                value = str(empty)
            args += [a, value]
            i += 2
        else:
            assert not a.startswith("-"), f"unknown helm flag {a}: teach this test about it"
            positional.append(a)
            i += 1
    assert len(positional) == 2, f"expected RELEASE CHART, got {positional}"
    release, chart = positional
    assert chart in ("oci://ghcr.io/pulltrace/charts/pulltrace", "pulltrace/pulltrace",
                     "chart/pulltrace"), f"unknown chart reference {chart}"
    return release, namespace, args


@pytest.mark.parametrize("block, words", HELM,
                         ids=[f"{b.where()}:{' '.join(w[:2])}" for b, w in HELM])
def test_helm_command_renders_with_real_helm(block, words, helm, tmp_path):
    release, namespace, args = as_template(words, tmp_path)
    r = helm.run("template", release, CHART, "--namespace", namespace, *args, check=False)
    assert r.returncode == 0, f"{block.where()}: {' '.join(words)}\n{r.stderr}"
    objects = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert objects, f"{block.where()}: renders nothing"
    if "--show-only" not in args:
        assert chartlib.problems(objects, namespace) == []


def test_helm_commands_are_found():
    # The pages show install, upgrade and template commands: a parser that finds none is broken.
    assert {w[1] for _, w in HELM} == {"install", "upgrade", "template"}


# ---- yaml ------------------------------------------------------------------------------------

YAML = operator_blocks("yaml")


def is_manifest(doc):
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc


@pytest.mark.parametrize("block", YAML, ids=ids(YAML))
def test_yaml_block_is_a_manifest_or_valid_values(block, helm, tmp_path):
    docs = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert docs, f"{block.where()}: empty"
    if all(is_manifest(d) for d in docs):
        for d in docs:
            assert d["metadata"]["name"], block.where()
        return
    assert len(docs) == 1 and isinstance(docs[0], dict), f"{block.where()}: not a values file"
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(docs[0])]
    assert errors == [], f"{block.where()}: {errors}"
    values = tmp_path / "values.yaml"
    values.write_text(block.text)
    objects = helm.template(["-f", values])
    assert chartlib.problems(objects, "pulltrace") == []


def test_policy_values_example_reaches_the_configmap(helm, tmp_path):
    """policy.md's values example: the block scalar is the ConfigMap's file, the settings the
    server's environment."""
    [block] = [b for b in blocks("policy.md") if b.lang == "yaml"]
    values = yaml.safe_load(block.text)
    path = tmp_path / "values.yaml"
    path.write_text(block.text)
    objects = helm.template(["-f", path])
    cm = chartlib.find(objects, "ConfigMap", "-policy")
    assert cm["data"] == values["policy"]["scripts"]
    env = chartlib.env_of(chartlib.find(objects, "Deployment"))
    for k, v in values["policy"]["settings"].items():
        assert env[f"PULLTRACE_POLICY_SETTING_{k}"] == str(v)


# ---- promql ----------------------------------------------------------------------------------

PROMQL = operator_blocks("promql")


def test_promql_blocks_parse_and_name_real_metrics(real_metrics, tmp_path):  # noqa: F811
    assert PROMQL, "no promql blocks found"
    exprs = [b.text.strip() for b in PROMQL]
    rules = {"groups": [{"name": "docs", "rules": [
        {"record": f"docs:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "docs-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert check_queries_against_metrics(exprs, real_metrics)


def test_alert_table_matches_the_chart(helm):
    text = (DOCS / "metrics.md").read_text()
    section = text.split("\n## Alert rules\n", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(Pulltrace\w+)` \|", section, re.M)
    objects = helm.template(["--set", "prometheusRule.enabled=true"])
    spec = chartlib.find(objects, "PrometheusRule")["spec"]
    rendered = [r["alert"] for g in spec["groups"] for r in g["rules"]]
    assert sorted(documented) == sorted(rendered)


# ---- json and log messages -------------------------------------------------------------------

def logged_messages():
    """Every message the daemons log: the string literal that opens a PT_LOG_* call."""
    found = set()
    for src in (REPO / "src").rglob("*.c"):
        for m in re.finditer(r'PT_LOG_[A-Z]+\(\s*"((?:[^"\\]|\\.)*)"', src.read_text()):
            found.add(m.group(1).encode().decode("unicode_escape"))
    assert len(found) > 20
    return found


JSON = operator_blocks("json")


@pytest.mark.parametrize("block", JSON, ids=ids(JSON))
def test_json_block_parses_and_logs_real_messages(block):
    lines = [line for line in block.text.splitlines() if line.strip()]
    try:
        docs = [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        docs = [json.loads(block.text)]
    for d in docs:
        if isinstance(d, dict) and "msg" in d and "level" in d:
            assert d["msg"] in logged_messages(), f"{block.where()}: no daemon logs {d['msg']!r}"


def test_troubleshooting_quotes_real_log_messages():
    text = (DOCS / "troubleshooting.md").read_text()
    quoted = {re.sub(r"\s+", " ", q) for q in re.findall(r"\blogs?\s+`([^`]+)`", text)}
    assert len(quoted) >= 5, quoted
    missing = sorted(q for q in quoted if q not in logged_messages())
    assert missing == [], f"docs/troubleshooting.md quotes log messages no daemon logs: {missing}"


def c_strings():
    """The string literals of src/, adjacent literals ("a" "b") joined as C joins them."""
    out = []
    for src in (REPO / "src").rglob("*.c"):
        code = re.sub(r'"\s*\n\s*"', "", src.read_text())
        out += [m.group(1) for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', code)]
    return "\n".join(out)


def test_readyz_details_are_the_servers():
    """Each `detail` of the troubleshooting page's /readyz tables: its fixed text (between the
    UPPERCASE placeholders) is in the server's format strings."""
    text = (DOCS / "troubleshooting.md").read_text()
    section = text.split("\n## `/readyz` answers 503\n", 1)[1].split("\n## ", 1)[0]
    details = [row.split("|")[2].strip().strip("`") for row in section.splitlines()
               if re.match(r"^\| `(kubernetes|policy|history)` \| `", row)]
    assert len(details) >= 4, details
    strings = c_strings()
    for d in details:
        for chunk in re.split(r"\b[A-Z]+\b(?::[A-Z]+\b)*", d):
            chunk = chunk.strip(" :();")
            if len(chunk) > 3:
                assert chunk in strings, f"/readyz detail {d!r}: {chunk!r} is not in src/"


# ---- lua -------------------------------------------------------------------------------------

LUA = operator_blocks("lua")


@pytest.mark.parametrize("block", LUA, ids=ids(LUA))
def test_lua_block_compiles(block, tmp_path):
    path = tmp_path / "block.lua"
    path.write_text(block.text)
    r = subprocess.run([LUAC, "-p", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{block.where()}: {r.stderr}"


def test_blocks_are_found():
    langs = {b.lang for b in operator_blocks()}
    assert {"sh", "yaml", "promql", "json", "lua"} <= langs, langs


# ---- the policy's inputs ---------------------------------------------------------------------

INPUTS_SCRIPT = r"""
-- Logs the member names of every hook input it sees.
local function keys(t)
  local k = {}
  for n in pairs(t or {}) do k[#k + 1] = n end
  table.sort(k)
  return table.concat(k, ",")
end

pulltrace.correlate(function(pull, pods, events)
  local pod = pods[1] or {}
  pulltrace.log("info", "docs-inputs", {hook = "correlate", pull = keys(pull),
    layer = keys((pull.layers or {})[1]), pod = keys(pod),
    container = keys((pod.containers or {})[1]), event = keys(events[1])})
  return {matches = {{namespace = pod.namespace, pod = pod.name}}}
end)

pulltrace.on("*", function(ev)
  pulltrace.log("info", "docs-inputs", {hook = "alert", event = keys(ev), pull = keys(ev.pull),
    pod = keys(((ev.pull or {}).pods or {})[1]), layer = keys(((ev.pull or {}).layers or {})[1])})
end)
"""


def documented_members(section, anchor):
    """Member names of the first table after `anchor` in a section of policy.md: the
    backticked names of its first column, and the {{a, b}} lists of its meanings by row."""
    text = (DOCS / "policy.md").read_text()
    part = text.split(anchor, 1)[1]
    rows = []
    for line in part.splitlines()[1:]:
        if line.strip().startswith("|"):
            rows.append(line.strip())
        elif rows:
            break
    names, nested = set(), {}
    for row in rows[2:]:
        first, meaning = row.split("|")[1], "|".join(row.split("|")[2:])
        for n in re.findall(r"`(\w+)`", first):
            names.add(n)
            m = re.search(r"\{\{([\w, ]+)\}", meaning)
            if m:
                nested[n] = {x.strip() for x in m.group(1).split(",")}
    assert names, f"no table after {anchor!r}"
    return names, nested


def split_keys(s):
    return set(filter(None, (s or "").split(",")))


@pytest.mark.stack(containerd=False, nginx=False)
def test_policy_inputs_are_the_documented_ones(stack, kube, tmp_path):
    """A script that logs the members of every input it gets, on the real server fed by the
    fake API server and agent reports: every member is in policy.md's tables, and every member
    the tables list for the correlation is given."""
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "zz-inputs.lua").write_text(INPUTS_SCRIPT)
    ref = "127.0.0.1:5000/docs/app:v1"
    pod = kube.add_pod("shop", "web-1", "docs-node", [("web", ref)])
    kube.add_event(pod, "Pulled", f'Successfully pulled image "{ref}" in 1.2s (1.5s including '
                                  'waiting). Image size: 2048 bytes.')
    srv = stack.server(env={"PULLTRACE_KUBECONFIG": kube.write_kubeconfig(),
                            "PULLTRACE_POLICY_DIR": str(policy)}).wait_kube_ready(20)
    now = time.time()
    layers = [reports.layer(reports.sha256(1), 1024, 1024, updated=now),
              reports.layer(reports.sha256(2), 1024, 512, updated=now)]
    p = reports.pull("p1", "127.0.0.1/docs/app", reports.sha256(3), layers, started=now - 5,
                     index_digest=reports.sha256(4))
    r = srv.post(reports.report("docs-node", 1, [p]))
    assert r.status_code == 200, r.text
    layers[1] = reports.layer(reports.sha256(2), 1024, 1024, updated=now + 1)
    p2 = reports.pull("p1", "127.0.0.1/docs/app", reports.sha256(3), layers, started=now - 5,
                      completed=now + 1, index_digest=reports.sha256(4))
    assert srv.post(reports.report("docs-node", 2, [p2])).status_code == 200
    # A pull that appears complete (a small image between two reports): its correlation has
    # completedAt.
    q = reports.pull("p2", "127.0.0.1/docs/app", reports.sha256(5),
                     [reports.layer(reports.sha256(6), 512, 512, updated=now)], started=now - 1,
                     completed=now, index_digest=reports.sha256(4))
    assert srv.post(reports.report("docs-node", 3, [p2, q])).status_code == 200

    def seen():
        lines = [x for x in srv.log_json() if x.get("msg") == "docs-inputs"]
        hooks = {x["hook"] for x in lines}
        events = {x.get("event") for x in lines if x["hook"] == "alert"}
        done = all(any("completedAt" in split_keys(x.get("pull")) for x in lines
                       if x["hook"] == hook) for hook in ("alert", "correlate"))
        return lines if hooks == {"correlate", "alert"} and done and len(events) >= 1 else None
    lines = wait_until(seen, 30, what="the hooks' inputs in the log")

    pull_doc, pull_nested = documented_members("", "- `pull`, the same table")
    pod_doc, pod_nested = documented_members("", "- `pods`, the pods known")
    event_doc, _ = documented_members("", "- `events`, kubelet's recent")
    alert_doc, alert_nested = documented_members("", "- The `event` table")
    corr = [x for x in lines if x["hook"] == "correlate"]
    got = {k: set().union(*(split_keys(x.get(k)) for x in corr))
           for k in ("pull", "layer", "pod", "container", "event")}
    # Nothing the hooks receive is undocumented ...
    assert got["pull"] <= pull_doc, got["pull"] - pull_doc
    assert got["layer"] <= pull_nested["layers"], got["layer"] - pull_nested["layers"]
    assert got["pod"] <= pod_doc, got["pod"] - pod_doc
    assert got["container"] <= pod_nested["containers"]
    assert got["event"] <= event_doc, got["event"] - event_doc
    # ... and everything documented is given (with this pull, pod and event every member is set).
    assert pull_doc <= got["pull"], pull_doc - got["pull"]
    assert pull_nested["layers"] <= got["layer"], pull_nested["layers"] - got["layer"]
    assert pod_doc <= got["pod"], pod_doc - got["pod"]
    assert pod_nested["containers"] <= got["container"]
    # `historic` is set only on an event the server's first list found older than the server,
    # which depends on when the fake API server's event was made: documented, not always given.
    assert event_doc - {"historic"} <= got["event"], event_doc - got["event"]
    # The alert handlers' event: its members are documented, its pull is the correlation's.
    alerts = [x for x in lines if x["hook"] == "alert"]
    ev_keys = set().union(*(split_keys(x.get("event")) for x in alerts))
    assert ev_keys <= alert_doc, ev_keys - alert_doc
    assert set().union(*(split_keys(x.get("pull")) for x in alerts)) <= pull_doc
    assert set().union(*(split_keys(x.get("pod")) for x in alerts)) <= pull_nested["pods"]
    # Only a stalled, slow or failed pull's members are missing here.
    assert alert_doc - ev_keys <= {"stalledSeconds", "typicalSeconds", "typicalPulls", "slowFactor",
                                   "reason", "message"}, alert_doc - ev_keys


# ---- links between pages ---------------------------------------------------------------------

def heading_anchors(page):
    """The ids MkDocs gives the headings of docs/<page> (Python-Markdown's toc slugify)."""
    from markdown.extensions.toc import slugify
    text = re.sub(r"```.*?```", "", (DOCS / page).read_text(), flags=re.S)
    seen, out = {}, set()
    for h in re.findall(r"^#{1,6} (.+)$", text, re.M):
        h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h.replace("`", ""))
        slug = slugify(h, "-")
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}_{seen[slug]}"
        else:
            seen[slug] = 0
        out.add(slug)
    return out


def test_links_name_headings_that_exist():
    """`page.md#anchor` links of every page (MkDocs 1.4 checks the pages, not the anchors)."""
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    anchors = {p: heading_anchors(p) for p in pages}
    broken = []
    for page in pages:
        for m in re.finditer(r"\]\(([a-z0-9_-]*\.md)?#([^)\s]+)\)", (DOCS / page).read_text()):
            target = m.group(1) or page
            if target in anchors and m.group(2) not in anchors[target]:
                broken.append(f"docs/{page}: {target}#{m.group(2)}")
    assert broken == []


def test_a_copy_of_the_default_correlation_extends_it(build_dir, tmp_path):
    """policy.md: copy lua/correlate.lua into the directory as correlate.lua and change the
    copy. The copy, changed as the page suggests (pods of a namespace left out), passes the
    strict check."""
    from harness import find_binary
    script = (REPO / "lua" / "correlate.lua").read_text()
    anchor = "function M.correlate(pull, pods, events)\n"
    assert anchor in script
    script = script.replace(anchor, anchor + """  local kept = {}
  for _, p in ipairs(pods or {}) do
    if p.namespace ~= "batch" then kept[#kept + 1] = p end
  end
  pods = kept
""")
    (tmp_path / "correlate.lua").write_text(script)
    r = subprocess.run([str(find_binary("pulltrace-server", build_dir)), "--check-policy",
                        str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout + r.stderr
