"""The alert path end to end: a real pull in containerd stalls (nginx frozen mid-download),
the real agent reports the stalled layers, pulltrace-server's policy raises an alert, and the
server delivers it to every sink: the event stream (`alert`), /metrics, its log and an
Alertmanager-style webhook that fails first and is retried. A second server fed by a second
agent from the same containerd runs an operator policy directory whose scripts replace the
default alerts, and raises its own alerts instead.

A third test runs Debian's Alertmanager (privately, on 127.0.0.1, a null receiver, clustering
off): the stalled pull's alert is active there while the pull stays stalled (re-sent with
endsAt ahead), and resolved once nginx is thawed and the pull moves again.

Why freeze and not kill: when nginx is killed, containerd fails the CRI pull at once and
deletes the partial ingests, so nothing stays stalled (the agent then shows the layers as
waiting again). A frozen nginx keeps the connections open with no byte moving, which is what
a stalled pull is; it is killed at the end, mid-pull.

containerd 1.6 writes a download in 1 MiB chunks, so an ingest's offset only moves every
1 MiB: the throttle (2 MiB/s) is chosen so that a healthy download moves several times per
stall threshold (2 s). Nothing here asserts on speed."""
# ctest: TIMEOUT=300

import json
import os
import re
import shutil
from datetime import datetime, timezone

import pytest
import requests

from harness import free_port, wait_until

MIB = 1024 * 1024
NODE = "alert-node"
ALERTS_PATH = "/api/v2/alerts"   # Alertmanager API v2

# Replaces the built-in alerts.lua (same file name): no PullStalled/PullFailed, but one
# alert of the team's own, labelled from a setting.
TEAM_ALERTS = r'''
local team = pulltrace.settings.team or "unknown"
local after = pulltrace.duration(pulltrace.settings.stallAlertAfter)

pulltrace.on("pull.stalled", function(ev)
  if (ev.stalledSeconds or 0) < after then
    return nil
  end
  local p = ev.pull
  return {
    name = "TeamImagePullStuck", severity = "critical",
    summary = string.format("%s on %s stuck at %d of %d bytes for %ds",
      p.image, p.node, p.downloadedBytes, p.totalBytes, math.floor(ev.stalledSeconds)),
    labels = { team = team, node = p.node, image = p.imageRef, pull = p.id },
  }
end)
'''

# An extra script (loads after the built-in ones): progress events carry the rate fields
# that docs/policy.md's slow-pull example relies on.
PROGRESS_ALERT = r'''
pulltrace.on("pull.progress", function(ev)
  local p = ev.pull
  if p.downloadedBytes > 0 and type(ev.bytesPerSec) == "number" and ev.bytesPerSec > 0
     and type(ev.elapsedSeconds) == "number" and ev.elapsedSeconds >= 0 then
    return { name = "PullMoving", severity = "info",
             summary = string.format("%s at %.0f B/s", p.imageRef, ev.bytesPerSec),
             labels = { pull = p.id } }
  end
end)
'''


def agent_env():
    return {"PULLTRACE_REPORT_INTERVAL": "500ms", "PULLTRACE_STALL_THRESHOLD": "2s"}


LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_alertmanager_v2(body):
    """Asserts that `body` is what Alertmanager's POST /api/v2/alerts accepts: a JSON array
    of postableAlert objects (labels required, string-valued; annotations string-valued;
    startsAt/endsAt RFC 3339 date-times; generatorURL a string)."""
    assert isinstance(body, list) and body, body
    for a in body:
        assert set(a) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}, a
        assert isinstance(a["labels"], dict) and a["labels"].get("alertname"), a
        for k, v in list(a["labels"].items()) + list(a.get("annotations", {}).items()):
            assert LABEL_NAME.match(k) and isinstance(v, str), (k, v)
        for k in ("startsAt", "endsAt"):
            if k in a:
                datetime.fromisoformat(a[k].replace("Z", "+00:00"))
        if "generatorURL" in a:
            assert isinstance(a["generatorURL"], str)


def alerts_received(hook):
    """Every alert object of the webhook requests answered with 200."""
    return [a for body in hook.snapshot() for a in body]


@pytest.mark.stack(rate=2 * MIB)
def test_stalled_pull_alert_reaches_every_sink(stack, cri_available, tmp_path):
    hook_a = stack.receiver(path=ALERTS_PATH)
    hook_a.fail(503, count=1)
    hook_b = stack.receiver(path=ALERTS_PATH)
    streams = []
    try:
        # Server A: the built-in policy, the stall alert after 2 s.
        a = stack.server(env={
            "PULLTRACE_KUBERNETES": "off",
            "PULLTRACE_STALL_ALERT_AFTER": "2s",
            "PULLTRACE_ALERT_WEBHOOK_URL": hook_a.endpoint,
            "PULLTRACE_ALERT_WEBHOOK_TIMEOUT": "3s"})
        # Server B: an operator directory replacing the default alerts.
        policy = tmp_path / "policy"
        policy.mkdir()
        (policy / "alerts.lua").write_text(TEAM_ALERTS)
        (policy / "zz-progress.lua").write_text(PROGRESS_ALERT)
        b = stack.server(env={
            "PULLTRACE_KUBERNETES": "off",
            "PULLTRACE_STALL_ALERT_AFTER": "1s",
            "PULLTRACE_POLICY_DIR": str(policy),
            "PULLTRACE_POLICY_SETTING_team": "payments",
            "PULLTRACE_ALERT_WEBHOOK_URL": hook_b.endpoint})
        ready = requests.get(b.url + "/readyz", timeout=5).json()
        assert ready["status"] == "ready", ready
        sa, sb = a.events(), b.events()
        streams += [sa, sb]
        sa.wait(lambda e: e["event"] == "snapshot")
        sb.wait(lambda e: e["event"] == "snapshot")

        img = stack.images.image("e2e/stall", "v1", layers=[12 * MIB, 10 * MIB])
        stack.agent(a.url, node_name=NODE, env=agent_env())
        stack.agent(b.url, node_name=NODE, env=agent_env())
        stack.cri_pull(img, background=True)

        # Bytes move on both servers, then the registry proxy freezes mid-download.
        def moving(s):
            return lambda e: (e["event"] in ("pull.started", "pull.progress")
                              and e["data"]["pull"]["manifestDigest"] == img.manifest_digest
                              and 0 < e["data"]["pull"]["downloadedBytes"] < img.total_bytes)
        sa.wait(moving(sa), timeout=60, what="bytes moving on A")
        sb.wait(moving(sb), timeout=60, what="bytes moving on B")
        stack.nginx.freeze()
        frozen_after = sa.last_id()

        # --- server A: the default PullStalled alert --------------------------------------
        stalled = sa.wait(lambda e: e["event"] == "pull.stalled" and e["id"] > frozen_after,
                          timeout=30, what="pull.stalled on A")
        pull = stalled["data"]["pull"]
        assert pull["state"] == "stalled" and pull["node"] == NODE
        assert pull["downloadedBytes"] < pull["totalBytes"] == img.total_bytes
        alert_ev = sa.wait(lambda e: e["event"] == "alert", timeout=30, what="alert on A")
        assert alert_ev["id"] > stalled["id"]
        al = alert_ev["data"]["alert"]
        assert alert_ev["data"]["v"] == 1 and alert_ev["data"]["type"] == "alert"
        assert al["name"] == "PullStalled" and al["severity"] == "warning"
        assert al["labels"] == {"node": NODE, "image": f"127.0.0.1/{img.name}",
                                "pull": pull["id"]}
        assert al["pullId"] == pull["id"] and al["node"] == NODE
        assert al["eventType"] == "pull.stalled"
        assert f"pull of 127.0.0.1/{img.name} on {NODE} has made no progress for" \
            in al["summary"]

        # The log line.
        logged = [r for r in a.log_json() if r.get("msg") == "alert"]
        assert len(logged) == 1, logged
        assert logged[0]["alert"] == "PullStalled" and logged[0]["level"] == "warn"
        assert logged[0]["labels"]["pull"] == pull["id"]
        assert logged[0]["script"] == "alerts.lua" and logged[0]["event"] == "pull.stalled"

        # The webhook: the first POST answered 503, the same body retried and accepted.
        first, second = hook_a.wait_attempts(2, timeout=30)[:2]
        body1, body2 = json.loads(first.body), json.loads(second.body)
        assert (first.status, second.status) == (503, 200)
        assert first.path == second.path == "/api/v2/alerts"
        assert first.headers["Content-Type"].startswith("application/json")
        assert body1 == body2
        check_alertmanager_v2(body1)
        assert len(body1) == 1
        am = body1[0]
        assert am["labels"] == {"alertname": "PullStalled", "severity": "warning",
                                "node": NODE, "image": f"127.0.0.1/{img.name}",
                                "pull": pull["id"]}
        assert am["annotations"]["summary"] == al["summary"]
        assert second.time > first.time

        # The metrics; repeats of the same alert are suppressed (PULLTRACE_ALERT_REPEAT, 1h).
        wait_until(lambda: a.metric("pulltrace_alert_webhook_deliveries_total",
                                    {"result": "sent"}) == 1, 10, what="delivery counted")
        wait_until(lambda: (a.metric("pulltrace_alerts_suppressed_total") or 0) >= 1, 15,
                   what="a repeat suppressed")
        m = a.metrics()
        assert m.value("pulltrace_alerts_total", {"severity": "warning"}) == 1
        assert m.value("pulltrace_alerts_total", {"severity": "critical"}) == 0
        assert m.value("pulltrace_alert_webhook_failures_total") == 1
        assert m.value("pulltrace_alert_webhook_deliveries_total", {"result": "dropped"}) == 0
        assert m.value("pulltrace_pulls_active", {"state": "stalled"}) == 1
        assert m.value("pulltrace_pull_stalls_total") >= 1
        assert m.value("pulltrace_policy_fallbacks_total", {"hook": "alert"}) == 0
        assert len(sa.of("alert")) == 1
        assert any("alert webhook delivery failed" == r.get("msg") and r.get("status") == 503
                   for r in a.log_json())

        # --- server B: the operator's scripts replaced the result -------------------------
        team = sb.wait(lambda e: e["event"] == "alert"
                       and e["data"]["alert"]["name"] == "TeamImagePullStuck",
                       timeout=30, what="the team alert on B")["data"]["alert"]
        assert team["severity"] == "critical"
        assert team["labels"]["team"] == "payments" and team["labels"]["node"] == NODE
        assert team["labels"]["image"] == f"127.0.0.1/{img.name}"
        assert team["pullId"] == team["labels"]["pull"]
        assert "stuck at" in team["summary"]
        moving_alert = sb.wait(lambda e: e["event"] == "alert"
                               and e["data"]["alert"]["name"] == "PullMoving",
                               timeout=5, what="the progress alert on B")["data"]["alert"]
        assert moving_alert["severity"] == "info" and moving_alert["eventType"] == "pull.progress"
        hook_b.wait_attempts(1, timeout=30)
        wait_until(lambda: {"TeamImagePullStuck", "PullMoving"} <=
                   {x["labels"]["alertname"] for x in alerts_received(hook_b)}, 15,
                   what="B's alerts on its webhook")
        names_b = {e["data"]["alert"]["name"] for e in sb.of("alert")}
        assert names_b == {"TeamImagePullStuck", "PullMoving"}, names_b
        assert "PullStalled" not in {x["labels"]["alertname"] for x in alerts_received(hook_b)}
        for attempt in hook_b.attempts:
            check_alertmanager_v2(json.loads(attempt.body))
        assert b.metric("pulltrace_alerts_total", {"severity": "warning"}) == 0
        assert b.metric("pulltrace_alerts_total", {"severity": "critical"}) == 1
        assert b.metric("pulltrace_policy_fallbacks_total", {"hook": "alert"}) == 0

        # Killed mid-pull: the servers keep serving.
        stack.nginx.kill()
        assert requests.get(a.url + "/healthz", timeout=5).status_code == 200
    finally:
        for s in streams:
            s.close()


ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


class Alertmanager:
    """Debian's prometheus-alertmanager on 127.0.0.1 with a null receiver and no cluster
    listener, in the stack's directory; stopped with the stack (by PID)."""

    def __init__(self, stack):
        self.dir = stack.dir / "alertmanager"
        (self.dir / "data").mkdir(parents=True)
        cfg = self.dir / "alertmanager.yml"
        cfg.write_text('route:\n  receiver: "null"\n  group_wait: 1s\nreceivers:\n  - name: "null"\n')
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.daemon = stack.http_daemon(
            "alertmanager", ALERTMANAGER, url=self.url,
            args=[f"--config.file={cfg}", f"--storage.path={self.dir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                  "--log.level=warn"])

    def alerts(self, **labels):
        """GET /api/v2/alerts (the alerts not resolved), filtered on `labels`."""
        r = requests.get(self.url + "/api/v2/alerts", timeout=5,
                         params={"filter": [f'{k}="{v}"' for k, v in labels.items()]})
        r.raise_for_status()
        return r.json()

    def received(self, status):
        """alertmanager_alerts_received_total{status} (firing or resolved), summed."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("alertmanager_alerts_received_total{")
                   and f'status="{status}"' in line)


@pytest.mark.stack(rate=2 * MIB)
def test_alert_is_active_in_alertmanager_then_resolved(stack, cri_available):
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.fail(f"{ALERTMANAGER} is missing: scripts/install-deps.sh test installs it")
    am = Alertmanager(stack)
    srv = stack.server(env={
        "PULLTRACE_KUBERNETES": "off",
        "PULLTRACE_STALL_ALERT_AFTER": "1s",
        "PULLTRACE_ALERT_RESEND": "2s",
        "PULLTRACE_ALERT_WEBHOOK_URL": am.url + ALERTS_PATH})
    s = srv.events()
    try:
        s.wait(lambda e: e["event"] == "snapshot")
        img = stack.images.image("e2e/am", "v1", layers=[12 * MIB, 10 * MIB])
        stack.agent(srv.url, node_name=NODE, env=agent_env())
        stack.cri_pull(img, background=True)
        s.wait(lambda e: (e["event"] in ("pull.started", "pull.progress")
                          and e["data"]["pull"]["manifestDigest"] == img.manifest_digest
                          and 0 < e["data"]["pull"]["downloadedBytes"] < img.total_bytes),
               timeout=60, what="bytes moving")
        stack.nginx.freeze()
        alert = s.wait(lambda e: e["event"] == "alert", timeout=60, what="the stall alert")
        pull_id = alert["data"]["alert"]["pullId"]
        assert alert["data"]["alert"]["name"] == "PullStalled"

        # Active in Alertmanager, with an endsAt ahead, and kept firing by re-sends while the
        # pull stays stalled.
        firing = wait_until(lambda: am.alerts(alertname="PullStalled", pull=pull_id), 30,
                            what="the alert in Alertmanager")
        assert len(firing) == 1
        a = firing[0]
        assert a["status"]["state"] == "active"
        assert a["labels"] == {"alertname": "PullStalled", "severity": "warning", "node": NODE,
                               "image": f"127.0.0.1/{img.name}", "pull": pull_id}
        assert "has made no progress" in a["annotations"]["summary"]
        ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00"))
        assert ends > datetime.now(timezone.utc)
        wait_until(lambda: am.received("firing") >= 3, 60, what="re-sends while stalled")
        assert srv.metric("pulltrace_pulls_active", {"state": "stalled"}) == 1
        still = am.alerts(alertname="PullStalled", pull=pull_id)
        assert len(still) == 1 and still[0]["status"]["state"] == "active"
        assert srv.metric("pulltrace_alerts_active") == 1

        # The pull moves again: the alert is sent resolved and leaves Alertmanager's list
        # (which holds only unresolved alerts); without the resolution the re-sends would
        # keep it there.
        stack.nginx.thaw()
        s.wait(lambda e: e["event"] == "pull.progress" and e["data"]["pull"]["id"] == pull_id
               and e["data"]["pull"]["state"] == "pulling", timeout=60, what="the pull moving")
        wait_until(lambda: am.received("resolved") >= 1, 30, what="the resolved alert received")
        wait_until(lambda: not am.alerts(alertname="PullStalled", pull=pull_id), 30,
                   what="the alert resolved in Alertmanager")
        assert srv.metric("pulltrace_alerts_resolved_total") == 1
        assert srv.metric("pulltrace_alerts_active") == 0
        resolved = [r for r in srv.log_json() if r.get("msg") == "alert resolved"]
        assert len(resolved) == 1 and resolved[0]["labels"]["pull"] == pull_id
        assert srv.metric("pulltrace_alert_webhook_deliveries_total", {"result": "dropped"}) == 0
    finally:
        s.close()
