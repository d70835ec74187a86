"""A fake Kubernetes API server for the end-to-end tests (kube-apiserver is not available here).

It speaks the real protocol for the part Pulltrace uses, with the object shapes of the
Kubernetes API reference (core/v1 Pod, Event, PodList, EventList, Status):

- HTTPS on 127.0.0.1 with a CA and a server certificate made by `openssl` at test time;
  every request needs `Authorization: Bearer <token>` (401 Status otherwise).
- list: `GET /api/v1/{pods,events}` and `/api/v1/namespaces/{ns}/{pods,events}`, with
  `metadata.resourceVersion`, `limit` + `continue` pagination and `fieldSelector`
  (`a=b`, `a==b`, `a!=b`, comma = and; unsupported field labels answer 400 like the real one).
- watch: `?watch=1` (or `true`) streams chunked JSON lines `{"type": ADDED|MODIFIED|DELETED|
  BOOKMARK|ERROR, "object": ...}` from `resourceVersion`; `allowWatchBookmarks=true` adds
  BOOKMARK events; `timeoutSeconds` ends the watch. An object that stops matching the field
  selector is sent as DELETED, one that starts matching as ADDED (as the API server does).
- A `resourceVersion` older than the compaction point gets `410 Gone` (an ERROR event carrying
  a Status with code 410 on a watch, or the HTTP status itself with `gone_mode="http"`).
- coordination.k8s.io/v1 Leases (leader election): `GET`/`PUT` on
  `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}` and `POST` on `.../leases`.
  An update must carry `metadata.resourceVersion` (422 Invalid without it, as Leases allow
  no unconditional update) and a stale one is a `409 Conflict` Status; creating an existing
  Lease is `409 AlreadyExists`, reading or updating a missing one `404 NotFound`.
- Also for kubectl-pulltrace: client certificates signed by the CA authenticate as their CN
  (`make_client_cert()`), more bearer tokens (`add_token()`); `GET .../pods/{name}`; the
  pod list's `labelSelector` (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`,
  `!a`); Services with Endpoints and their `services/[scheme:]{name}[:{port}]/proxy/{path}`
  subresource (`https:` speaks TLS to the endpoint without verifying its certificate, as the
  real proxy does), which forwards to the endpoint with the headers the real proxy passes on (not
  Authorization, X-Remote-*, Impersonate-*, hop-by-hop) and streams the answer back (404 Status for
  an unknown Service, 503 ServiceUnavailable Status without an endpoint or a port, or when
  the endpoint does not answer); workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet,
  Job) by name, with their `spec.selector`.

- For pulltrace-server's token checks (docs/security.md): `POST
  /apis/authentication.k8s.io/v1/tokenreviews` answers 201 with the TokenReview and its
  status as the API server fills it: for a projected service-account token made by
  `issue_sa_token()` (a JWT with `exp`, `aud` and the kubernetes.io claims) the username
  `system:serviceaccount:NS:NAME`, the groups, and the bound-token `extra` keys
  `authentication.kubernetes.io/pod-name`, `pod-uid`, `credential-id` and, unless the token is
  made with `node_claims=False` (API servers before 1.30), `node-name` and `node-uid`;
  `status.audiences` is the intersection of `spec.audiences` (default: the API server's own)
  with the token's; an unknown, expired, revoked or wrong-audience token, or one whose pod is
  gone, is `authenticated: false` with an `error`. `POST
  /apis/authorization.k8s.io/v1/subjectaccessreviews` answers `status.allowed` from a rule
  table (`allow()`), as RBAC would. Creating either review needs a rule granting the caller
  `create` on it (403 Forbidden Status otherwise), as the API server's RBAC does.
- Also for the server's Events on pods: `events.k8s.io/v1` Events, created with `POST
  /apis/events.k8s.io/v1/namespaces/{ns}/events` (validated as the API server validates
  them: eventTime, reportingController, reportingInstance, action, reason and type required,
  type Normal or Warning, note at most 1 kB, regarding in the Event's namespace, series count
  at least 2 with a lastObservedTime; 201 with uid, resourceVersion and creationTimestamp,
  409 AlreadyExists, 422 Invalid), updated with `PATCH .../events/{name}` (merge patch; the
  fields the API server keeps immutable answer 422), listed with `GET
  /apis/events.k8s.io/v1[/namespaces/{ns}]/events` (an EventList of that group, with
  `fieldSelector` on `regarding.name`, `regarding.namespace`, `reason`,
  `reportingController`) and read with `GET .../events/{name}`. They are kept apart from the
  core/v1 events the watcher lists (the real API server shows both through one storage; the
  server ignores reasons that are not kubelet's anyway).

Test hooks: add/modify/delete pods, add, repeat or delete events, `drop_watches()`, `compact()`
(every older resourceVersion expires: the next watch gets 410), `trim_history()` (etcd-style
compaction of all but the newest changes), `restart()` (same port, same state), `set_token()`,
`lease()` (a Lease as stored), `interfere_lease()` (another client's write lands between a
client's read and its update: the update conflicts), `fail_next()` (the next list and watch
requests answer an error Status, e.g. 500, as an overloaded API server or etcd does),
`hang_watches()` (the next watches answer 200 and then send nothing, not even at their
timeoutSeconds, as through a dead proxy, until the client gives up), and request counters.
"""

import base64
import http.client
import itertools
import json
import re
import select
import socket
import ssl
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .httpd import JsonHandler
from .proc import free_port

RESOURCES = ("pods", "events")
# The reviews pulltrace-server creates: path -> (API group, resource, kind).
REVIEWS = {"/apis/authentication.k8s.io/v1/tokenreviews":
           ("authentication.k8s.io", "tokenreviews", "TokenReview"),
           "/apis/authorization.k8s.io/v1/subjectaccessreviews":
           ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview")}
LEASE_PREFIX = ["apis", "coordination.k8s.io", "v1", "namespaces"]
# metav1.MicroTime as the API server parses it (RFC 3339, fractional seconds optional).
MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")

# Field labels the real API server accepts for these resources (a subset).
FIELDS = {
    "pods": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"]["namespace"],
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", "default-scheduler"),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
    },
    "events": {
        "metadata.name": lambda o: o["metadata"]["name"],
        "metadata.namespace": lambda o: o["metadata"]["namespace"],
        "involvedObject.kind": lambda o: o["involvedObject"].get("kind", ""),
        "involvedObject.name": lambda o: o["involvedObject"].get("name", ""),
        "involvedObject.namespace": lambda o: o["involvedObject"].get("namespace", ""),
        "involvedObject.uid": lambda o: o["involvedObject"].get("uid", ""),
        "reason": lambda o: o.get("reason", ""),
        "source": lambda o: o.get("source", {}).get("component", ""),
        "type": lambda o: o.get("type", ""),
        "reportingComponent": lambda o: o.get("reportingComponent", ""),
    },
}


def k8s_time(t=None):
    """RFC 3339 with second precision, as metav1.Time serialises."""
    t = time.time() if t is None else t
    return datetime.fromtimestamp(int(t), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class BadSelector(ValueError):
    pass


def parse_selector(resource, text):
    """fieldSelector -> list of (getter, op, value); raises BadSelector."""
    terms = []
    for part in filter(None, (text or "").split(",")):
        if "!=" in part:
            key, val = part.split("!=", 1)
            op = "!="
        elif "==" in part:
            key, val = part.split("==", 1)
            op = "="
        elif "=" in part:
            key, val = part.split("=", 1)
            op = "="
        else:
            raise BadSelector(f"invalid selector: '{part}'; can't understand '{part}'")
        getter = FIELDS[resource].get(key.strip())
        if getter is None:
            raise BadSelector(f'"{key}" is not a known field selector: only '
                              f'"{", ".join(sorted(FIELDS[resource]))}"')
        terms.append((getter, op, val.strip()))
    return terms


def matches(terms, obj, ns):
    if obj is None:
        return False
    if ns is not None and obj["metadata"]["namespace"] != ns:
        return False
    for getter, op, val in terms:
        if (getter(obj) == val) != (op == "="):
            return False
    return True


class _Watch:
    def __init__(self, handler):
        self.handler = handler
        self.dropped = False

    def drop(self):
        self.dropped = True
        try:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class KubeAPI:
    """The fake API server. `start()` makes the certificates (once) and listens."""

    def __init__(self, workdir, token="e2e-kube-token", port=None, bookmark_interval=1.0,
                 gone_mode="event"):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.port = port or free_port()
        self.bookmark_interval = bookmark_interval
        self.gone_mode = gone_mode
        self.lock = threading.Condition()
        self.rv = 100
        self.compacted = 0
        self.objects = {r: {} for r in RESOURCES}   # resource -> {(ns, name): obj}
        self.history = []                           # (rv, resource, type, obj, old)
        self.watches = set()
        self.requests = []                          # (method, path, query dict)
        self.counts = {"list": {r: 0 for r in RESOURCES}, "watch": {r: 0 for r in RESOURCES},
                       "unauthorized": 0, "gone": 0, "proxy": 0,
                       "lease": {"get": 0, "create": 0, "update": 0, "conflict": 0,
                                 "not_found": 0}}
        self.leases = {}                            # (ns, name) -> Lease
        self.lease_interference = {}                # (ns, name) -> updates still to disturb
        self.tokens = {}                            # more bearer tokens -> user name
        self.users = []                             # the user of every authenticated request
        self.services = {}                          # (ns, name) -> Service
        self.endpoints = {}                         # (ns, name) -> [(ip, {port name: port})]
        self.workloads = {}                         # (api path, ns, resource, name) -> object
        self.sa_tokens = {}                         # issued service-account tokens -> claims
        self.revoked = set()
        self.rules = []                             # RBAC-like grants for reviews (allow())
        self.reviews = {"tokenreviews": [], "subjectaccessreviews": []}  # request bodies
        self.httpd = None
        self.thread = None
        self.ca_file = self.dir / "ca.crt"
        self.cert_file = self.dir / "server.crt"
        self.key_file = self.dir / "server.key"
        self.log_path = self.dir / "kubeapi.log"
        self._uid = itertools.count(1)
        self.events_v1 = {}                         # (ns, name) -> events.k8s.io/v1 Event
        self.faults = []                            # statuses the next lists/watches answer
        self.hangs = 0                              # watches still to hang
        self.event_writes = []                      # (method, path, content type, body)

    # -- certificates and configuration files -------------------------------------------
    def _openssl(self, *args):
        with open(self.dir / "openssl.log", "ab") as log:
            subprocess.run(["openssl", *args], check=True, stdout=log, stderr=log, cwd=self.dir)

    def make_certs(self):
        if self.cert_file.exists():
            return
        ca_key = self.dir / "ca.key"
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                      "-out", self.ca_file, "-days", "2", "-subj", "/CN=pulltrace-e2e-ca")
        (self.dir / "san.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key_file,
                      "-out", self.dir / "server.csr", "-subj", "/CN=kubernetes")
        self._openssl("x509", "-req", "-in", self.dir / "server.csr", "-CA", self.ca_file,
                      "-CAkey", ca_key, "-CAcreateserial", "-out", self.cert_file, "-days", "2",
                      "-extfile", self.dir / "san.ext")

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def make_client_cert(self, user):
        """A client certificate (CN=user) signed by the CA, as kubeadm makes them for users;
        returns (cert path, key path)."""
        cert, key = self.dir / f"client-{user}.crt", self.dir / f"client-{user}.key"
        if not cert.exists():
            (self.dir / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
            self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                          self.dir / f"client-{user}.csr", "-subj", f"/CN={user}")
            self._openssl("x509", "-req", "-in", self.dir / f"client-{user}.csr", "-CA",
                          self.ca_file, "-CAkey", self.dir / "ca.key", "-CAcreateserial",
                          "-out", cert, "-days", "2", "-extfile", self.dir / "client.ext")
        return cert, key

    def write_kubeconfig(self, path=None, inline_ca=True, token=None, token_file=None,
                         user=None):
        """A kubeconfig for this server (token user, or the kubeconfig `user` members given
        as a dict: client certificates, exec); returns its path."""
        path = Path(path or self.dir / "kubeconfig")
        if inline_ca:
            ca = "    certificate-authority-data: " + \
                base64.b64encode(self.ca_file.read_bytes()).decode()
        else:
            ca = f"    certificate-authority: {self.ca_file}"
        if user is not None:
            user = "\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in user.items())
        else:
            user = f"    tokenFile: {token_file}" if token_file else \
                f"    token: {token or self.token}"
        path.write_text(f"""# written by the e2e fake API server
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {self.url}
{ca}
- name: other
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: other
  context: {{cluster: other, user: nobody}}
- name: e2e
  context:
    cluster: e2e
    user: e2e-user
    namespace: default
current-context: "e2e"
users:
- name: nobody
  user: {{}}
- name: e2e-user
  user:
{user}
""")
        return path

    def write_service_account(self, sa_dir, namespace="pulltrace"):
        """The in-cluster files: token, ca.crt, namespace; returns the directory."""
        d = Path(sa_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "token").write_text(self.token + "\n")
        (d / "ca.crt").write_bytes(self.ca_file.read_bytes())
        (d / "namespace").write_text(namespace)
        return d

    def in_cluster_env(self, sa_dir):
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "PULLTRACE_KUBE_SA_DIR": str(sa_dir)}

    # -- lifecycle -----------------------------------------------------------------------
    def start(self):
        self.make_certs()
        api = self

        class Handler(_Handler):
            pass
        Handler.api = api
        ThreadingHTTPServer.allow_reuse_address = True
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        # Client certificates are optional (tokens are the other way), checked against the CA.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(self.ca_file)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.log("started", url=self.url)
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.drop_watches()
        self.thread.join(timeout=5)
        self.httpd = None
        self.log("stopped")

    def restart(self, down_seconds=0.5):
        """Stops listening (dropping every watch), waits, and listens again on the same port
        with the same objects and resourceVersions, like an API server restart."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def close(self):
        self.stop()

    def log(self, msg, **kw):
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"t": round(time.time(), 3), "msg": msg, **kw}) + "\n")

    # -- state changes -------------------------------------------------------------------
    def _commit(self, resource, typ, obj, old=None):
        """Records a change under the lock; returns the object."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if typ == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        self.history.append((self.rv, resource, typ, json.loads(json.dumps(obj)), old))
        self.lock.notify_all()
        return obj

    def add_pod(self, namespace, name, node, images, init_images=(), phase="Pending",
                waiting="ContainerCreating", labels=None):
        """A Pod as the API server stores it after scheduling; `images` is a list of images
        or (container name, image) pairs; `labels` default to {"app": name}."""
        def containers(lst, prefix):
            out = []
            for i, im in enumerate(lst):
                cname, image = im if isinstance(im, tuple) else (f"{prefix}{i}", im)
                out.append({"name": cname, "image": image, "imagePullPolicy": "IfNotPresent",
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"})
            return out

        spec_c = containers(images, "app")
        spec_i = containers(init_images, "init")

        def statuses(specs):
            return [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                     "restartCount": 0, "started": False,
                     "state": {"waiting": {"reason": waiting}}} for c in specs]
        pod = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                         "creationTimestamp": k8s_time(),
                         "labels": dict(labels) if labels is not None else {"app": name}},
            "spec": {"nodeName": node, "containers": spec_c, "restartPolicy": "Always",
                     "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": phase, "hostIP": "127.0.0.1", "startTime": k8s_time(),
                       "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": statuses(spec_c)},
        }
        if spec_i:
            pod["spec"]["initContainers"] = spec_i
            pod["status"]["initContainerStatuses"] = statuses(spec_i)
        with self.lock:
            return self._commit("pods", "ADDED", pod)

    def pod(self, namespace, name):
        with self.lock:
            return json.loads(json.dumps(self.objects["pods"][(namespace, name)]))

    def modify_pod(self, namespace, name, fn):
        """Applies fn(pod) to a copy of the pod and stores it (MODIFIED)."""
        with self.lock:
            old = self.objects["pods"][(namespace, name)]
            new = json.loads(json.dumps(old))
            fn(new)
            return self._commit("pods", "MODIFIED", new, old)

    def set_pod_running(self, namespace, name):
        def run(p):
            p["status"]["phase"] = "Running"
            for c in p["status"].get("containerStatuses", []):
                c["state"] = {"running": {"startedAt": k8s_time()}}
                c["ready"] = c["started"] = True
        return self.modify_pod(namespace, name, run)

    def delete_pod(self, namespace, name):
        with self.lock:
            old = self.objects["pods"][(namespace, name)]
            return self._commit("pods", "DELETED", json.loads(json.dumps(old)), old)

    def add_event(self, pod, reason, message, node=None, type_="Normal", at=None, count=1,
                  container=None):
        """A core/v1 Event about `pod` (a Pod dict from add_pod) as kubelet records it."""
        md = pod["metadata"]
        node = node or pod["spec"].get("nodeName")
        t = k8s_time(at)
        name = f"{md['name']}.{next(self._uid):016x}"
        cname = container or pod["spec"]["containers"][0]["name"]
        ev = {
            "kind": "Event", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": md["namespace"], "uid": str(uuid.uuid4()),
                         "creationTimestamp": t},
            "involvedObject": {"kind": "Pod", "namespace": md["namespace"], "name": md["name"],
                               "uid": md["uid"], "apiVersion": "v1",
                               "resourceVersion": md.get("resourceVersion", ""),
                               "fieldPath": f"spec.containers{{{cname}}}"},
            "reason": reason, "message": message,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": t, "lastTimestamp": t, "count": count, "type": type_,
            "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": node,
        }
        with self.lock:
            return self._commit("events", "ADDED", ev)

    def repeat_event(self, event, at=None):
        """kubelet's event aggregation: the same event again, count + 1 (MODIFIED)."""
        key = (event["metadata"]["namespace"], event["metadata"]["name"])
        with self.lock:
            old = self.objects["events"][key]
            new = json.loads(json.dumps(old))
            new["count"] += 1
            new["lastTimestamp"] = k8s_time(at)
            return self._commit("events", "MODIFIED", new, old)

    def delete_event(self, event):
        """The event leaves the API (DELETED), as when the API server's event TTL expires."""
        key = (event["metadata"]["namespace"], event["metadata"]["name"])
        with self.lock:
            old = self.objects["events"].get(key)
            if old is None:
                return None
            return self._commit("events", "DELETED", json.loads(json.dumps(old)), old)

    def trim_history(self, keep=1000):
        """Forgets all but the newest `keep` changes, like etcd's periodic compaction: a
        watch that is behind them gets 410 Gone and relists; current watches go on. Keeps a
        long-running process (the demo) from growing without bound."""
        with self.lock:
            if len(self.history) <= keep:
                return 0
            drop = len(self.history) - keep
            self.compacted = max(self.compacted, self.history[drop - 1][0])
            del self.history[:drop]
            self.lock.notify_all()
        return drop

    def compact(self):
        """Every resourceVersion up to now expires: resuming from one answers 410 Gone."""
        with self.lock:
            self.rv += 1
            self.compacted = self.rv
            self.history = []
            self.lock.notify_all()
        self.log("compacted", rv=self.compacted)

    def drop_watches(self):
        with self.lock:
            ws = list(self.watches)
        for w in ws:
            w.drop()
        self.log("dropped watches", n=len(ws))
        return len(ws)

    def fail_next(self, *codes):
        """The next len(codes) list or watch requests answer these HTTP statuses (with the
        Status objects the API server sends for them) instead of their result."""
        with self.lock:
            self.faults.extend(codes)

    def hang_watches(self, n):
        """The next `n` watch requests hang: headers, then silence until the client leaves."""
        with self.lock:
            self.hangs += n

    def set_token(self, token):
        self.token = token

    def lease(self, namespace, name):
        """A copy of the Lease as stored, or None."""
        with self.lock:
            obj = self.leases.get((namespace, name))
            return json.loads(json.dumps(obj)) if obj else None

    def interfere_lease(self, namespace, name, times=1):
        """The next `times` updates of the Lease each meet another client's write that landed
        after the updater read it: the object's resourceVersion moves on (its content stays)
        and the update gets 409 Conflict, as on a real API server."""
        with self.lock:
            self.lease_interference[(namespace, name)] = times

    def add_token(self, token, user="token-user"):
        """Another bearer token the server accepts (e.g. the one an exec plugin returns)."""
        self.tokens[token] = user

    def add_service(self, namespace, name, ports, endpoints=()):
        """A core/v1 Service with `ports` [{"name", "port", "targetPort"}] and its Endpoints:
        `endpoints` is [(ip, {port name: port})] of ready addresses."""
        svc = {"kind": "Service", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                            "creationTimestamp": k8s_time()},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                        "ports": [dict({"protocol": "TCP"}, **p) for p in ports]}}
        with self.lock:
            self.services[(namespace, name)] = svc
            self.endpoints[(namespace, name)] = list(endpoints)
        return svc

    def set_endpoints(self, namespace, name, endpoints):
        with self.lock:
            self.endpoints[(namespace, name)] = list(endpoints)

    def add_workload(self, kind, namespace, name, match_labels, match_expressions=None):
        """A Deployment, StatefulSet, DaemonSet, ReplicaSet or Job whose spec.selector is
        a LabelSelector of `match_labels` (and `match_expressions`)."""
        api, resource = {"Deployment": ("apis/apps/v1", "deployments"),
                         "StatefulSet": ("apis/apps/v1", "statefulsets"),
                         "DaemonSet": ("apis/apps/v1", "daemonsets"),
                         "ReplicaSet": ("apis/apps/v1", "replicasets"),
                         "Job": ("apis/batch/v1", "jobs")}[kind]
        selector = {"matchLabels": dict(match_labels)}
        if match_expressions:
            selector["matchExpressions"] = match_expressions
        obj = {"kind": kind, "apiVersion": api[5:],
               "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                            "creationTimestamp": k8s_time(), "generation": 1},
               "spec": {"selector": selector,
                        "template": {"metadata": {"labels": dict(match_labels)},
                                     "spec": {"containers": []}}}}
        with self.lock:
            self.workloads[(api, namespace, resource, name)] = obj
        return obj

    # -- token and access reviews -----------------------------------------------------------
    API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"

    def issue_sa_token(self, namespace, service_account, pod=None, audiences=("pulltrace",),
                       expires_in=3600, node_claims=True, node=None):
        """A projected service-account token as kubelet gets it from the TokenRequest API: a
        JWT (signature bytes made up: only this server checks it) bound to the pod
        `namespace/pod` (and its node, from the pod's spec.nodeName unless `node` is given)."""
        now = int(time.time())
        claims = {"aud": list(audiences), "exp": now + int(expires_in), "iat": now, "nbf": now,
                  "iss": self.API_AUDIENCE,
                  "jti": str(uuid.uuid4()),
                  "sub": f"system:serviceaccount:{namespace}:{service_account}",
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": service_account,
                                                       "uid": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                             f"{namespace}/{service_account}"))}}}
        if pod is not None:
            with self.lock:
                obj = self.objects["pods"].get((namespace, pod))
            if obj is None:
                raise KeyError(f"no pod {namespace}/{pod}")
            claims["kubernetes.io"]["pod"] = {"name": pod, "uid": obj["metadata"]["uid"]}
            node = node or obj["spec"].get("nodeName")
            if node_claims and node:
                claims["kubernetes.io"]["node"] = {
                    "name": node, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "node/" + node))}

        def b64(d):
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()
        token = ".".join([b64(json.dumps({"alg": "RS256", "kid": "e2e"}).encode()),
                          b64(json.dumps(claims).encode()), b64(uuid.uuid4().bytes * 8)])
        with self.lock:
            self.sa_tokens[token] = claims
        return token

    def revoke(self, token):
        """The token no longer authenticates (as a bound token whose secret or pod is gone)."""
        with self.lock:
            self.revoked.add(token)

    def allow(self, verb, api_group, resource, user=None, group=None):
        """A grant as an RBAC (Cluster)RoleBinding gives it: `user` or members of `group` may
        `verb` `resource` in `api_group` ("*" matches any)."""
        with self.lock:
            self.rules.append({"user": user, "group": group, "verb": verb,
                               "apiGroup": api_group, "resource": resource})

    def allowed(self, user, groups, verb, api_group, resource):
        with self.lock:
            rules = list(self.rules)
        for r in rules:
            who = (r["user"] is not None and r["user"] == user) or \
                (r["group"] is not None and r["group"] in groups)
            if who and r["verb"] in ("*", verb) and r["apiGroup"] in ("*", api_group) and \
                    r["resource"] in ("*", resource):
                return True
        return False

    def token_review(self, token, audiences):
        """status of a TokenReview of `token` for `audiences` (None = the API server's)."""
        wanted = list(audiences) if audiences else [self.API_AUDIENCE]
        with self.lock:
            claims = self.sa_tokens.get(token)
            revoked = token in self.revoked
            user = self.tokens.get(token) or ("e2e-user" if token == self.token else None)
        if revoked or (claims is None and user is None):
            return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        if claims is None:
            aud = [a for a in wanted if a == self.API_AUDIENCE]
            if not aud:
                return {"user": {}, "error": "[invalid bearer token, token audiences "
                                             f"{json.dumps([self.API_AUDIENCE])} is invalid for the "
                                             f"target audiences {json.dumps(wanted)}]"}
            return {"authenticated": True, "audiences": aud,
                    "user": {"username": user, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, user)),
                             "groups": ["system:authenticated"]}}
        if claims["exp"] <= time.time():
            return {"user": {}, "error": "[invalid bearer token, service account token has expired]"}
        aud = [a for a in wanted if a in claims["aud"]]
        if not aud:
            return {"user": {}, "error": "[invalid bearer token, token audiences "
                                         f"{json.dumps(claims['aud'])} is invalid for the target "
                                         f"audiences {json.dumps(wanted)}]"}
        k = claims["kubernetes.io"]
        ns, sa = k["namespace"], k["serviceaccount"]["name"]
        extra = {"authentication.kubernetes.io/credential-id": ["JTI=" + claims["jti"]]}
        if "pod" in k:
            with self.lock:
                obj = self.objects["pods"].get((ns, k["pod"]["name"]))
            if obj is None or obj["metadata"]["uid"] != k["pod"]["uid"]:
                return {"user": {}, "error": f'[invalid bearer token, pod "{k["pod"]["name"]}" '
                                             f'not found]'}
            extra["authentication.kubernetes.io/pod-name"] = [k["pod"]["name"]]
            extra["authentication.kubernetes.io/pod-uid"] = [k["pod"]["uid"]]
        if "node" in k:
            extra["authentication.kubernetes.io/node-name"] = [k["node"]["name"]]
            extra["authentication.kubernetes.io/node-uid"] = [k["node"]["uid"]]
        return {"authenticated": True, "audiences": aud,
                "user": {"username": f"system:serviceaccount:{ns}:{sa}",
                         "uid": k["serviceaccount"]["uid"],
                         "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                    "system:authenticated"],
                         "extra": extra}}

    def events_v1_list(self, namespace=None, reason=None):
        """The events.k8s.io/v1 Events written so far (copies), oldest first."""
        with self.lock:
            out = [json.loads(json.dumps(o)) for (ns, _), o in self.events_v1.items()
                   if (namespace is None or ns == namespace)
                   and (reason is None or o.get("reason") == reason)]
        return sorted(out, key=lambda o: int(o["metadata"]["resourceVersion"]))

    def active_watches(self, resource=None):
        with self.lock:
            return sum(1 for w in self.watches
                       if resource is None or w.handler.resource == resource)


class _Handler(JsonHandler):
    api = None  # set per server
    resource = None

    def log_message(self, fmt, *args):
        self.api.log("http", line=fmt % args)

    def do_GET(self):
        api = self.api
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        with api.lock:
            api.requests.append(("GET", url.path, q))
        user = self._user()
        if user is None:
            with api.lock:
                api.counts["unauthorized"] += 1
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        with api.lock:
            api.users.append(user)
        if parts[:4] == LEASE_PREFIX:
            return self._lease("GET", parts)
        where = self._events_v1_path(url)
        if where:
            return self._events_v1_get(where, q)
        if self._get_one(url, parts):
            return
        ns = None
        if len(parts) == 3 and parts[:2] == ["api", "v1"] and parts[2] in RESOURCES:
            resource = parts[2]
        elif len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and \
                parts[4] in RESOURCES:
            ns, resource = parts[3], parts[4]
        else:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                                               "the requested resource"))
        self.resource = resource
        try:
            terms = parse_selector(resource, q.get("fieldSelector"))
        except BadSelector as e:
            return self.send_json(400, status(400, "BadRequest", str(e)))
        with api.lock:
            fault = api.faults.pop(0) if api.faults else None
        if fault:
            reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests",
                      410: "Expired"}.get(fault, "InternalError")
            return self.send_json(fault, status(fault, reason, f"injected {fault} by the test"))
        if q.get("watch") in ("1", "true"):
            return self._watch(resource, ns, terms, q)
        return self._list(resource, ns, terms, q)

    def _review(self, url, raw, user):
        """POST of a TokenReview or SubjectAccessReview by the authenticated `user`."""
        api = self.api
        group, resource, kind = REVIEWS[url.path]
        if not api.allowed(user, ["system:authenticated"], "create", group, resource):
            return self.send_json(403, status(
                403, "Forbidden", f'{resource}.{group} is forbidden: User "{user}" cannot create '
                                  f'resource "{resource}" in API group "{group}" at the cluster scope'))
        try:
            body = json.loads(raw)
            if body.get("kind") != kind or body.get("apiVersion") != f"{group}/v1":
                raise ValueError(f"expected {kind} {group}/v1")
            spec = body["spec"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return self.send_json(400, status(400, "BadRequest", f"bad {kind}: {e}"))
        with api.lock:
            api.reviews[resource].append(body)
        if resource == "tokenreviews":
            st = api.token_review(spec.get("token", ""), spec.get("audiences"))
        else:
            attrs = spec.get("resourceAttributes") or {}
            ok = api.allowed(spec.get("user"), spec.get("groups") or [], attrs.get("verb"),
                             attrs.get("group", ""), attrs.get("resource"))
            st = {"allowed": ok}
            if ok:
                st["reason"] = "RBAC: allowed by the e2e rule table"
        out = {"kind": kind, "apiVersion": f"{group}/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": st}
        api.log("review", kind=kind, status=st)
        return self.send_json(201, out)

    def _list(self, resource, ns, terms, q):
        api = self.api
        with api.lock:
            api.counts["list"][resource] += 1
            items = [o for k, o in sorted(api.objects[resource].items()) if matches(terms, o, ns)]
            rv = api.rv
        try:
            labels = parse_label_selector(q.get("labelSelector"))
        except BadSelector as e:
            return self.send_json(400, status(400, "BadRequest", str(e)))
        items = [o for o in items if label_match(labels, o)]
        start = 0
        if q.get("continue"):
            try:
                tok = json.loads(base64.b64decode(q["continue"]))
                start, rv = int(tok["start"]), int(tok["rv"])
            except (ValueError, KeyError):
                return self.send_json(400, status(400, "BadRequest", "invalid continue token"))
            if rv <= api.compacted:
                with api.lock:
                    api.counts["gone"] += 1
                return self.send_json(410, status(410, "Expired", "The provided continue "
                                                   "parameter is too old"))
        limit = int(q.get("limit") or 0)
        page = items[start:start + limit] if limit > 0 else items[start:]
        md = {"resourceVersion": str(rv)}
        if limit > 0 and start + limit < len(items):
            md["continue"] = base64.b64encode(json.dumps(
                {"rv": rv, "start": start + limit}).encode()).decode()
            md["remainingItemCount"] = len(items) - start - limit
        kind = "PodList" if resource == "pods" else "EventList"
        out = []
        for o in page:
            o = json.loads(json.dumps(o))
            o.pop("kind", None)
            o.pop("apiVersion", None)
            out.append(o)
        self.send_json(200, {"kind": kind, "apiVersion": "v1", "metadata": md, "items": out})

    def _chunk(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, resource, ns, terms, q):
        api = self.api
        rv_text = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") == "true"
        timeout = float(q.get("timeoutSeconds") or 1800)
        with api.lock:
            api.counts["watch"][resource] += 1
            try:
                since = int(rv_text) if rv_text not in ("", "0") else None
            except ValueError:
                return self.send_json(400, status(400, "BadRequest", "invalid resourceVersion"))
            gone = since is not None and since < api.compacted
            if gone:
                api.counts["gone"] += 1
        msg = f"too old resource version: {since} ({api.compacted})"
        if gone and api.gone_mode == "http":
            return self.send_json(410, status(410, "Expired", msg))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.lock:
            hang = api.hangs > 0
            api.hangs -= hang
        if hang:
            self.wfile.flush()
            # Silence until the client closes (its socket turns readable) or the server stops.
            while api.httpd is not None and \
                    not select.select([self.connection], [], [], 0.5)[0]:
                pass
            self.close_connection = True
            return
        w = _Watch(self)
        kind = "Pod" if resource == "pods" else "Event"
        try:
            if gone:
                self._chunk({"type": "ERROR", "object": status(410, "Expired", msg)})
                return self._end()
            with api.lock:
                api.watches.add(w)
                if since is None:
                    # No resourceVersion: the current state as ADDED, then the changes.
                    pending = [("ADDED", o) for _, o in sorted(api.objects[resource].items())
                               if matches(terms, o, ns)]
                    since = api.rv
                else:
                    pending = []
            for typ, o in pending:
                self._chunk({"type": typ, "object": o})
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while not w.dropped and api.httpd is not None:
                now = time.monotonic()
                if now >= deadline:
                    break
                with api.lock:
                    if since < api.compacted:
                        api.counts["gone"] += 1
                        out = [("ERROR", status(410, "Expired", f"too old resource version: "
                                                f"{since} ({api.compacted})"))]
                    else:
                        out = []
                        for rv, res, typ, obj, old in api.history:
                            if rv <= since or res != resource:
                                continue
                            now_in, was_in = matches(terms, obj, ns), matches(terms, old, ns)
                            if typ == "DELETED":
                                if was_in:
                                    out.append(("DELETED", obj))
                            elif now_in and (was_in or typ == "ADDED"):
                                out.append((typ, obj))
                            elif now_in:
                                out.append(("ADDED", obj))
                            elif was_in:
                                out.append(("DELETED", obj))
                            since = rv
                    # Every change up to here was looked at. Read before waiting: a change
                    # made during the wait is sent on the next pass, and a bookmark must
                    # not skip past it.
                    cur = api.rv
                    if not out:
                        api.lock.wait(timeout=min(0.2, max(0.0, deadline - now)))
                for typ, obj in out:
                    self._chunk({"type": typ, "object": obj})
                    if typ == "ERROR":
                        return self._end()
                if bookmarks and time.monotonic() - last_bookmark >= api.bookmark_interval:
                    since = max(since, cur)
                    self._chunk({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.monotonic()
            if not w.dropped:
                self._end()
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            with api.lock:
                api.watches.discard(w)
            if w.dropped:
                self.close_connection = True

    def _end(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    # -- coordination.k8s.io/v1 Leases -----------------------------------------------------
    def do_PUT(self):
        self._lease_write("PUT")

    def _lease_write(self, method):
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        body = self._body()
        if self._authenticate(method, url) is None:
            return
        if parts[:4] != LEASE_PREFIX:
            return self.send_json(405, status(405, "MethodNotAllowed",
                                              "the server does not allow this method on the "
                                              "requested resource"))
        try:
            obj = json.loads(body)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return self.send_json(400, status(400, "BadRequest",
                                              f"the body of the request was in an unknown "
                                              f"format: {e}"))
        return self._lease(method, parts, obj)

    def _lease(self, method, parts, obj=None):
        """GET/PUT .../namespaces/{ns}/leases/{name} and POST .../namespaces/{ns}/leases."""
        api = self.api
        if len(parts) == 6 and parts[5] == "leases" and method == "POST":
            ns, name = parts[4], (obj.get("metadata") or {}).get("name", "")
        elif len(parts) == 7 and parts[5] == "leases" and method in ("GET", "PUT"):
            ns, name = parts[4], parts[6]
        else:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                                               "the requested resource"))
        details = {"name": name, "group": "coordination.k8s.io", "kind": "leases"}

        def fail(code, reason, message):
            st = status(code, reason, message)
            st["details"] = details
            return self.send_json(code, st)

        key = (ns, name)
        if method == "GET":
            with api.lock:
                api.counts["lease"]["get"] += 1
                cur = api.leases.get(key)
                if cur is None:
                    api.counts["lease"]["not_found"] += 1
                cur = json.loads(json.dumps(cur)) if cur else None
            if cur is None:
                return fail(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            return self.send_json(200, cur)

        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        if md.get("namespace") not in (None, "", ns):
            return fail(400, "BadRequest", "the namespace of the provided object does not match "
                                           "the namespace sent on the request")
        if not name:
            return fail(422, "Invalid", "Lease.coordination.k8s.io \"\" is invalid: "
                                        "metadata.name: Required value: name or generateName "
                                        "is required")
        if method == "PUT" and md.get("name") != name:
            return fail(400, "BadRequest", f"the name of the object ({md.get('name')}) does not "
                                           f"match the name on the URL ({name})")
        problems = []
        d = spec.get("leaseDurationSeconds")
        if d is not None and (not isinstance(d, int) or d <= 0):
            problems.append(f"spec.leaseDurationSeconds: Invalid value: {d}: must be greater "
                            f"than 0")
        t = spec.get("leaseTransitions")
        if t is not None and (not isinstance(t, int) or t < 0):
            problems.append(f"spec.leaseTransitions: Invalid value: {t}: must be greater than "
                            f"or equal to 0")
        for f in ("acquireTime", "renewTime"):
            v = spec.get(f)
            if v is not None and not (isinstance(v, str) and MICRO_TIME.match(v)):
                return fail(400, "BadRequest", f"parsing time {json.dumps(v)}: cannot parse "
                                               f"as RFC 3339 (spec.{f})")
        if method == "PUT" and not md.get("resourceVersion"):
            problems.append("metadata.resourceVersion: Invalid value: 0x0: must be specified "
                            "for an update")
        if problems:
            return fail(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: '
                                        f'{", ".join(problems)}')
        keep = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
                "leaseTransitions", "strategy", "preferredHolder")
        with api.lock:
            cur = api.leases.get(key)
            if method == "POST":
                api.counts["lease"]["create"] += 1
                if cur is not None:
                    api.counts["lease"]["conflict"] += 1
                    code, reason = 409, "AlreadyExists"
                    message = f'leases.coordination.k8s.io "{name}" already exists'
                else:
                    api.rv += 1
                    new = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                           "metadata": {"name": name, "namespace": ns,
                                        "uid": str(uuid.uuid4()),
                                        "resourceVersion": str(api.rv),
                                        "creationTimestamp": k8s_time()},
                           "spec": {k: v for k, v in spec.items() if k in keep}}
                    api.leases[key] = new
                    code = 201
            else:
                api.counts["lease"]["update"] += 1
                if cur is not None and api.lease_interference.get(key, 0) > 0:
                    # Another client's write lands first.
                    api.lease_interference[key] -= 1
                    api.rv += 1
                    cur["metadata"]["resourceVersion"] = str(api.rv)
                if cur is None:
                    api.counts["lease"]["not_found"] += 1
                    code, reason = 404, "NotFound"
                    message = f'leases.coordination.k8s.io "{name}" not found'
                elif md.get("resourceVersion") != cur["metadata"]["resourceVersion"]:
                    api.counts["lease"]["conflict"] += 1
                    code, reason = 409, "Conflict"
                    message = (f'Operation cannot be fulfilled on leases.coordination.k8s.io '
                               f'"{name}": the object has been modified; please apply your '
                               f'changes to the latest version and try again')
                else:
                    api.rv += 1
                    new = json.loads(json.dumps(cur))
                    new["metadata"]["resourceVersion"] = str(api.rv)
                    new["spec"] = {k: v for k, v in spec.items() if k in keep}
                    api.leases[key] = new
                    code = 200
            out = json.loads(json.dumps(api.leases[key])) if code in (200, 201) else None
        if out is None:
            return fail(code, reason, message)
        api.log("lease " + ("created" if code == 201 else "updated"), namespace=ns, name=name,
                holder=out["spec"].get("holderIdentity"),
                resourceVersion=out["metadata"]["resourceVersion"])
        return self.send_json(code, out)
    # -- kubectl-pulltrace's part: who is asking, single objects, the service proxy -------
    # -- events.k8s.io/v1 ---------------------------------------------------------------
    def _authenticate(self, method, url):
        api = self.api
        with api.lock:
            api.requests.append((method, url.path, {}))
        user = self._user()
        if user is None:
            with api.lock:
                api.counts["unauthorized"] += 1
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        return user

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _events_v1_path(self, url):
        """(namespace or None, name or None) of an events.k8s.io/v1 path, or False."""
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:3] != ["apis", "events.k8s.io", "v1"]:
            return False
        rest = parts[3:]
        if rest == ["events"]:
            return None, None
        if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == "events":
            return rest[1], (rest[3] if len(rest) == 4 else None)
        return False

    def _write_request(self, method):
        """(url, events path or False, body) of an authenticated write, or None when it
        was answered 401."""
        url = urlsplit(self.path)
        where = self._events_v1_path(url)
        body = self._body()
        if self._authenticate(method, url) is None:
            return None
        return url, where, body

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path in REVIEWS:
            body = self._body()
            user = self._authenticate("POST", url)
            if user is not None:
                self._review(url, body, user)
            return
        if self.path.startswith("/" + "/".join(LEASE_PREFIX[:3]) + "/"):
            return self._lease_write("POST")
        req = self._write_request("POST")
        if req is None:
            return
        url, where, body = req
        if not where or where[0] is None or where[1] is not None:
            return self.send_json(405 if where else 404, status(
                405 if where else 404, "MethodNotAllowed" if where else "NotFound",
                "the server does not allow this method on the requested resource"))
        api = self.api
        with api.lock:
            api.event_writes.append(("POST", url.path, self.headers.get("Content-Type"), body))
        try:
            ev = json.loads(body)
        except ValueError:
            return self.send_json(400, status(400, "BadRequest", "invalid JSON body"))
        ns = where[0]
        problems = _event_v1_problems(ev, ns)
        if problems:
            return self.send_json(422, _invalid(ev.get("metadata", {}).get("name", ""), problems))
        name = ev["metadata"]["name"]
        with api.lock:
            if (ns, name) in api.events_v1:
                body = status(409, "AlreadyExists", f'events.events.k8s.io "{name}" already exists')
                body["details"] = {"name": name, "group": "events.k8s.io", "kind": "events"}
                return self.send_json(409, body)
            api.rv += 1
            ev["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4()),
                                   "resourceVersion": str(api.rv),
                                   "creationTimestamp": k8s_time()})
            api.events_v1[(ns, name)] = ev
            out = json.loads(json.dumps(ev))
        api.log("event created", namespace=ns, name=name, reason=ev.get("reason"))
        self.send_json(201, out)

    def do_PATCH(self):
        req = self._write_request("PATCH")
        if req is None:
            return
        url, where, body = req
        if not where or where[0] is None or where[1] is None:
            return self.send_json(404, status(404, "NotFound", "the server could not find "
                                                               "the requested resource"))
        api = self.api
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        with api.lock:
            api.event_writes.append(("PATCH", url.path, ctype, body))
        if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return self.send_json(415, status(415, "UnsupportedMediaType",
                                              f'the body of the request was in an unknown '
                                              f'format - accepted media types include: '
                                              f'application/merge-patch+json, '
                                              f'application/strategic-merge-patch+json'))
        try:
            patch = json.loads(body)
        except ValueError:
            return self.send_json(400, status(400, "BadRequest", "invalid JSON body"))
        ns, name = where
        with api.lock:
            old = api.events_v1.get((ns, name))
            if old is None:
                return self.send_json(404, not_found("events.events.k8s.io", name))
            new = _merge_patch(json.loads(json.dumps(old)), patch)
            problems = _event_v1_problems(new, ns)
            problems += [f"{k}: Invalid value: field is immutable" for k in EVENT_V1_IMMUTABLE
                         if new.get(k) != old.get(k)]
            if problems:
                return self.send_json(422, _invalid(name, problems))
            api.rv += 1
            new["metadata"]["resourceVersion"] = str(api.rv)
            api.events_v1[(ns, name)] = new
            out = json.loads(json.dumps(new))
        api.log("event patched", namespace=ns, name=name, series=new.get("series"))
        self.send_json(200, out)

    def _events_v1_get(self, where, q):
        api = self.api
        ns, name = where
        if name is not None:
            with api.lock:
                obj = api.events_v1.get((ns, name))
                obj = json.loads(json.dumps(obj)) if obj else None
            if obj is None:
                return self.send_json(404, not_found("events.events.k8s.io", name))
            return self.send_json(200, obj)
        terms = []
        for term in filter(None, (q.get("fieldSelector") or "").split(",")):
            k, _, v = term.partition("=")
            k, v = k.rstrip("!="), v.lstrip("=")
            if k not in EVENT_V1_FIELDS:
                return self.send_json(400, status(400, "BadRequest", f'"{k}" is not a known '
                                                  f'field selector: only "{", ".join(EVENT_V1_FIELDS)}"'))
            terms.append((k, v, "!=" in term))
        with api.lock:
            items = [json.loads(json.dumps(o)) for (n, _), o in sorted(api.events_v1.items())
                     if ns is None or n == ns]
            rv = api.rv
        items = [o for o in items
                 if all((EVENT_V1_FIELDS[k](o) == v) != neg for k, v, neg in terms)]
        for o in items:
            o.pop("kind", None)
            o.pop("apiVersion", None)
        self.send_json(200, {"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                             "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _user(self):
        """The authenticated user: a known bearer token, else a client certificate of the CA."""
        api = self.api
        auth = self.headers.get("Authorization", "")
        if auth == f"Bearer {api.token}":
            return "e2e-user"
        if auth.startswith("Bearer ") and auth[7:] in api.tokens:
            return api.tokens[auth[7:]]
        if auth:
            return None
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def _get_one(self, url, parts):
        """GET of one pod or workload, or the service proxy; False for other paths."""
        api = self.api
        if len(parts) >= 7 and parts[:3] == ["api", "v1", "namespaces"] and \
                parts[4] == "services" and parts[6] == "proxy":
            raw = url.path.strip("/").split("/", 7)
            self._proxy(parts[3], parts[5], "/" + (raw[7] if len(raw) > 7 else ""), url.query)
            return True
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            with api.lock:
                obj = api.objects["pods"].get((parts[3], parts[5]))
                obj = json.loads(json.dumps(obj)) if obj else None
            if obj is None:
                self.send_json(404, not_found("pods", parts[5]))
            else:
                self.send_json(200, obj)
            return True
        if len(parts) == 7 and parts[0] == "apis" and parts[3] == "namespaces":
            key = ("/".join(parts[:3]), parts[4], parts[5], parts[6])
            with api.lock:
                obj = api.workloads.get(key)
            if obj is None:
                group = parts[1] if parts[1] != "core" else ""
                self.send_json(404, not_found(f"{parts[5]}.{group}" if group else parts[5],
                                              parts[6]))
            else:
                self.send_json(200, obj)
            return True
        return False

    def _proxy(self, ns, spec, path, query):
        """services/[scheme:]name[:port]/proxy: forwards to the first ready endpoint with the
        request's headers as the API server passes them on (PROXY_DROPPED) and streams the
        answer back chunk by chunk, so an event stream flows. The scheme `https` speaks TLS to
        the endpoint without verifying its certificate, as the API server's proxy transport
        does (it dials the pod's IP, which no certificate names); none or `http`, plain HTTP."""
        api = self.api
        with api.lock:
            api.counts["proxy"] += 1
        scheme, name, port = split_scheme_name_port(spec)
        if name is None:
            return self.send_json(400, status(400, "BadRequest",
                                              f'invalid service request "{spec}"'))
        with api.lock:
            svc = api.services.get((ns, name))
            eps = list(api.endpoints.get((ns, name), ()))
        if svc is None:
            return self.send_json(404, not_found("services", name))
        ports = svc["spec"]["ports"]
        chosen = [p for p in ports if port in (p.get("name"), str(p["port"]))] if port else \
            ports[:1] if len(ports) == 1 else []
        if not chosen:
            return self.send_json(503, status(503, "ServiceUnavailable",
                                              f'no service port "{port}" found for service '
                                              f'"{name}"'))
        pname = chosen[0].get("name", "")
        targets = [(ip, m[pname]) for ip, m in eps if pname in m]
        if not targets:
            return self.send_json(503, status(503, "ServiceUnavailable",
                                              f'no endpoints available for service "{name}"'))
        ip, tport = targets[0]
        if scheme == "https":
            unverified = ssl.create_default_context()
            unverified.check_hostname = False
            unverified.verify_mode = ssl.CERT_NONE
            backend = http.client.HTTPSConnection(ip, tport, timeout=60, context=unverified)
        else:
            backend = http.client.HTTPConnection(ip, tport, timeout=60)
        headers = {k: v for k, v in self.headers.items() if not proxy_drops(k)}
        headers["X-Forwarded-For"] = self.client_address[0]
        try:
            backend.request("GET", path + (f"?{query}" if query else ""), headers=headers)
            resp = backend.getresponse()
        except (OSError, http.client.HTTPException) as e:
            backend.close()
            return self.send_json(503, status(503, "ServiceUnavailable",
                                              "error trying to reach service: "
                                              + backend_error(e, ip, tport)))
        try:
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                     "content-length"):
                    self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError, http.client.HTTPException):
            self.close_connection = True
        finally:
            backend.close()


def split_scheme_name_port(spec):
    """(scheme, name, port) of a proxy path's service as the API server splits it
    (k8s.io/apimachinery/pkg/util/net SplitSchemeNamePort): NAME, NAME:PORT or
    SCHEME:NAME:PORT, the scheme "", "http" or "https"; name None when it is none of these
    (`https:NAME` is the Service "https" on the port NAME)."""
    bits = spec.split(":")
    if len(bits) > 3:
        return "", None, ""
    scheme, name, port = (bits if len(bits) == 3 else ["", *bits, ""][:3])
    if not name or scheme not in ("", "http", "https"):
        return "", None, ""
    return scheme, name, port


def backend_error(e, ip, port):
    """What Go's HTTP client says when a request to the endpoint fails, as the API server puts
    it after "error trying to reach service: "."""
    if isinstance(e, http.client.RemoteDisconnected):  # closed before any answer
        return "EOF"
    if isinstance(e, ConnectionRefusedError):
        return f"dial tcp {ip}:{port}: connect: connection refused"
    if isinstance(e, ssl.SSLError) and e.reason == "WRONG_VERSION_NUMBER":
        return "tls: first record does not look like a TLS handshake"
    if isinstance(e, ConnectionResetError):
        return f"read tcp {ip}:{port}: read: connection reset by peer"
    if isinstance(e, http.client.BadStatusLine) and e.line.strip("\r\n'"):
        # Not HTTP at all (a TLS alert to a plain request): Go quotes the first line.
        quoted = "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02x}"
                         for c in e.line.rstrip("\r\n"))
        return f'malformed HTTP response "{quoted}"'
    if isinstance(e, http.client.BadStatusLine):
        return "EOF"
    return str(e)


# What the API server's service proxy does not pass on (kube-apiserver: the authentication
# filter, k8s.io/apiserver/pkg/endpoints/filters/authentication.go, deletes Authorization and
# the front-proxy X-Remote-User/-Group/-Extra-* headers of an authenticated request; the
# impersonation filter the Impersonate-* headers; the reverse proxy the hop-by-hop headers
# and Host; Content-Length too, as this proxy forwards GETs only). Everything else reaches the
# Service's pods.
PROXY_DROPPED = ("authorization", "x-remote-user", "x-remote-group", "impersonate-user",
                 "impersonate-group", "impersonate-uid", "connection", "keep-alive",
                 "proxy-authenticate", "proxy-authorization", "te", "trailer",
                 "transfer-encoding", "upgrade", "host", "content-length")
PROXY_DROPPED_PREFIXES = ("x-remote-extra-", "impersonate-extra-")


def proxy_drops(header):
    h = header.lower()
    return h in PROXY_DROPPED or h.startswith(PROXY_DROPPED_PREFIXES)


EVENT_V1_FIELDS = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
    "regarding.name": lambda o: o.get("regarding", {}).get("name", ""),
    "regarding.namespace": lambda o: o.get("regarding", {}).get("namespace", ""),
    "regarding.kind": lambda o: o.get("regarding", {}).get("kind", ""),
    "regarding.uid": lambda o: o.get("regarding", {}).get("uid", ""),
    "reason": lambda o: o.get("reason", ""),
    "reportingController": lambda o: o.get("reportingController", ""),
    "type": lambda o: o.get("type", ""),
}
# What the API server keeps unchanged on an update of an events.k8s.io/v1 Event.
EVENT_V1_IMMUTABLE = ("regarding", "related", "reason", "note", "type", "eventTime", "action",
                      "reportingController", "reportingInstance")
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def _event_v1_problems(ev, ns):
    """What the API server's validation of an events.k8s.io/v1 Event finds wrong."""
    p = []
    md = ev.get("metadata") or {}
    if ev.get("apiVersion") != "events.k8s.io/v1" or ev.get("kind") != "Event":
        p.append("apiVersion, kind: must be events.k8s.io/v1 Event")
    if not md.get("name"):
        p.append("metadata.name: Required value")
    if md.get("namespace") not in (None, ns):
        p.append("metadata.namespace: does not match the namespace of the request")
    if not _MICRO.match(str(ev.get("eventTime") or "")):
        p.append("eventTime: Required value")
    rc = ev.get("reportingController") or ""
    if not rc or not _QUALIFIED.match(rc) or len(rc) > 253:
        p.append("reportingController: Invalid value: must be a qualified name")
    if not ev.get("reportingInstance") or len(ev["reportingInstance"]) > 128:
        p.append("reportingInstance: Required value (at most 128 bytes)")
    for k in ("action", "reason"):
        if not ev.get(k) or len(ev[k]) > 128:
            p.append(f"{k}: Required value (at most 128 bytes)")
    if ev.get("type") not in ("Normal", "Warning"):
        p.append('type: Unsupported value: supported values: "Normal", "Warning"')
    if len((ev.get("note") or "").encode()) > 1024:
        p.append("note: Too long: must have at most 1024 bytes")
    reg = ev.get("regarding") or {}
    if not reg.get("kind") or not reg.get("name"):
        p.append("regarding: Required value")
    elif reg.get("namespace") not in (None, "", ns):
        p.append("regarding.namespace: Invalid value: does not match event.namespace")
    series = ev.get("series")
    if series is not None:
        if not isinstance(series.get("count"), int) or series["count"] < 2:
            p.append("series.count: Invalid value: should be at least 2")
        if not _MICRO.match(str(series.get("lastObservedTime") or "")):
            p.append("series.lastObservedTime: Required value")
    return p


def _invalid(name, problems):
    body = status(422, "Invalid", f'Event.events.k8s.io "{name}" is invalid: ' + ", ".join(problems))
    body["details"] = {"name": name, "group": "events.k8s.io", "kind": "Event",
                       "causes": [{"message": m} for m in problems]}
    return body


def _merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = _merge_patch(target.get(k), v)
    return target


def not_found(resource, name):
    """The API server's 404 Status for a named object."""
    kind = resource.split(".")[0]
    body = status(404, "NotFound", f'{resource} "{name}" not found')
    body["details"] = {"name": name, "kind": kind}
    group = resource.partition(".")[2]
    if group:
        body["details"]["group"] = group
    return body


_LABEL_TERM = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|"
                         r"\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def parse_label_selector(text):
    """labelSelector -> list of predicates over a labels dict; raises BadSelector."""
    terms, depth, cur = [], 0, ""
    for ch in text or "":
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        terms.append(cur)
    preds = []
    for t in terms:
        m = _LABEL_TERM.match(t)
        if not m or (m.group(1) and (m.group(3) or m.group(5))):
            raise BadSelector(f"unable to parse requirement: found '{t.strip()}', "
                              f"expected: a label selector requirement")
        neg, key, op, val, setop, vals = m.groups()
        if op in ("=", "=="):
            preds.append(lambda lb, k=key, v=val: lb.get(k) == v)
        elif op == "!=":
            preds.append(lambda lb, k=key, v=val: lb.get(k) != v)
        elif setop:
            vs = {v.strip() for v in vals.split(",") if v.strip()}
            if setop == "in":
                preds.append(lambda lb, k=key, vs=vs: lb.get(k) in vs)
            else:
                preds.append(lambda lb, k=key, vs=vs: lb.get(k) not in vs)
        elif neg:
            preds.append(lambda lb, k=key: k not in lb)
        else:
            preds.append(lambda lb, k=key: k in lb)
    return preds


def label_match(preds, obj):
    labels = obj["metadata"].get("labels") or {}
    return all(p(labels) for p in preds)
