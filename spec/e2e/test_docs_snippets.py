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
sources too, and the alert table of metrics.md against the chart's PrometheusRule."""
# ctest: TIMEOUT=600

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

import chartlib
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
