"""The Helm chart stays consistent with the binaries it deploys.

No helm binary can be installed here, so the templates are not rendered; instead every
setting the chart passes must be one the daemons document in --help (a renamed variable
would otherwise be silently ignored in a cluster), the chart's files must be valid YAML where
they are plain YAML, and the example policy shipped with it must pass --check-policy.
"""

import re
import subprocess
from pathlib import Path

import yaml

from harness import find_binary

CHART = Path(__file__).resolve().parents[2] / "chart" / "pulltrace"


def help_text(build_dir, name):
    r = subprocess.run([str(find_binary(name, build_dir)), "--help"], capture_output=True,
                       text=True, timeout=10, check=True)
    return r.stdout


def env_names(template):
    return set(re.findall(r"\bPULLTRACE_[A-Z_]+[A-Z]\b", template.read_text()))


def test_chart_metadata_and_values_parse():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "pulltrace"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["server"]["replicas"] == 1
    for key in ("reportInterval", "stallThreshold", "completedLinger"):
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", values["agent"][key]), key


def test_every_setting_the_chart_passes_is_known_to_the_daemon(build_dir):
    server_help = help_text(build_dir, "pulltrace-server")
    agent_help = help_text(build_dir, "pulltrace-agent")
    server_vars = env_names(CHART / "templates" / "server.yaml")
    agent_vars = env_names(CHART / "templates" / "agent.yaml")
    assert "PULLTRACE_AGENT_TOKEN" in server_vars and "PULLTRACE_AGENT_TOKEN" in agent_vars
    for v in server_vars - {"PULLTRACE_POLICY_SETTING_"}:
        assert v in server_help, f"server.yaml sets {v}, unknown to pulltrace-server --help"
    assert "PULLTRACE_POLICY_SETTING_" in server_help
    for v in agent_vars:
        assert v in agent_help, f"agent.yaml sets {v}, unknown to pulltrace-agent --help"


def test_templates_are_balanced():
    for t in (CHART / "templates").iterdir():
        text = t.read_text()
        assert text.count("{{") == text.count("}}"), t.name
        opened = len(re.findall(r"{{-?\s*(if|range|with|define)\b", text))
        closed = len(re.findall(r"{{-?\s*end\s*-?}}", text))
        assert opened == closed, f"{t.name}: {opened} blocks opened, {closed} closed"


def test_example_policy_passes_check_policy(build_dir, tmp_path):
    server = str(find_binary("pulltrace-server", build_dir))
    r = subprocess.run([server, "--check-policy", str(CHART / "examples" / "policy")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # The check is real: a broken copy of the example is refused with file and line.
    bad = tmp_path / "90-team-alerts.lua"
    bad.write_text((CHART / "examples" / "policy" / "90-team-alerts.lua").read_text()
                   .replace("return nil\nend)", "return nil\nend"))
    r = subprocess.run([server, "--check-policy", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "90-team-alerts.lua" in r.stdout + r.stderr
