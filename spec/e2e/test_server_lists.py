"""pulltrace-server as a real process at the scale of a rollout: lists read page by page
(limit, continue), event-stream subscriptions (types, image, node), rollout summaries, one
event per pull per report. Nothing here asserts on speed."""
# ctest: TIMEOUT=300

import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from harness import Server, reports

APP = "127.0.0.1/e2e/rollout:v2"
OTHER = "127.0.0.1/e2e/other:v1"
MIB = 1024 * 1024


def rollout_report(node, seq, image, downloaded, completed=False, layers=4):
    """One pull of `image` with `layers` layers of 1 MiB, `downloaded` bytes in each."""
    now = time.time()
    ls = [reports.layer(reports.sha256(1000 + i), MIB, min(MIB, downloaded)) for i in range(layers)]
    return reports.report(node, seq, pulls=[reports.pull(
        f"{node}/p1", image, reports.sha256(7), ls, started=now - 5,
        completed=now if completed else None)])


@pytest.fixture
def server(server_binary):
    d = tempfile.mkdtemp(prefix="pt-lists-e2e-")
    s = Server(server_binary, Path(d) / "server.log",
               env={"PULLTRACE_SSE_HEARTBEAT": "500ms"}).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_lists_come_in_pages(server):
    for i in range(30):
        assert server.post(rollout_report(f"node-{i:02d}", 1, APP, 0)).status_code == 200
    whole = requests.get(server.url + "/api/v1/pulls", params={"limit": 1000}, timeout=10).json()
    assert len(whole["pulls"]) == 30 and whole["metadata"] == {}
    # Newest first: the pulls in the order the server first saw them, reversed.
    assert [p["node"] for p in whole["pulls"]] == [f"node-{i:02d}" for i in reversed(range(30))]

    pages, token = [], None
    while True:
        params = {"limit": 7, **({"continue": token} if token else {})}
        doc = requests.get(server.url + "/api/v1/pulls", params=params, timeout=10).json()
        pages.append([p["id"] for p in doc["pulls"]])
        token = doc["metadata"].get("continue")
        if not token:
            break
        # A pull added meanwhile is newer than the position: not in the later pages.
        if len(pages) == 1:
            assert server.post(rollout_report("node-late", 1, APP, 0)).status_code == 200
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert sum(pages, []) == [p["id"] for p in whole["pulls"]]
    assert len(server.pulls()) == 31  # every page, the late pull included (harness pages)

    # Filters apply before paging.
    for i in range(5):
        server.post(rollout_report(f"node-{i:02d}", 2, APP, MIB, completed=True))
    done = server.pulls(state="completed", limit=2)
    assert sorted(p["node"] for p in done) == [f"node-{i:02d}" for i in range(5)]

    # Nodes by name, in pages.
    names = [n["name"] for n in server.list_all("nodes", limit=4)]
    assert names == sorted(names) and len(names) == 31

    # Bad paging parameters: a clear error naming the field.
    for params, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "x"}, "limit"),
                          ({"continue": "garbage"}, "continue"), ({"continue": "n1.00"}, "continue")):
        r = requests.get(server.url + "/api/v1/pulls", params=params, timeout=5)
        assert r.status_code == 400 and r.json()["field"] == field, (params, r.text)
    r = requests.get(server.url + "/api/v1/nodes", params={"continue": "p1.zz"}, timeout=5)
    assert r.status_code == 400 and r.json()["field"] == "continue"


def test_default_limit(server):
    """Without limit a list answers its first 500 items and a continue token."""
    nodes = 26
    pulls = [reports.pull(f"p{k}", APP, reports.sha256(7),
                          [reports.layer(reports.sha256(5000 + k), MIB, 0)], started=time.time())
             for k in range(20)]
    for i in range(nodes):
        r = server.post(reports.report(f"big-{i:02d}", 1, pulls=pulls))
        assert r.status_code == 200, r.text
    doc = requests.get(server.url + "/api/v1/pulls", timeout=10).json()
    assert len(doc["pulls"]) == 500 and doc["metadata"]["continue"]
    assert len(server.pulls()) == nodes * 20


def test_subscriptions_and_rollout_summaries(server):
    summaries = server.events(path="/api/v1/events?types=rollout.summary")
    app_only = server.events(path="/api/v1/events?image=rollout:v2&types=pull.*")
    one_node = server.events(path="/api/v1/events?node=node-01")
    everything = server.events()
    try:
        for s in (summaries, app_only, one_node, everything):
            snap = s.wait(lambda e: e["event"] == "snapshot", what="snapshot")
            assert snap["data"]["pulls"] == [] and "rollouts" in snap["data"]
        for seq, got in enumerate((0, MIB // 2, MIB), start=1):
            for i in range(4):
                server.post(rollout_report(f"node-{i:02d}", seq, APP, got if i < 3 else 0,
                                           completed=got == MIB and i < 3))
            server.post(rollout_report("node-x", seq, OTHER, got))
        # Three nodes done, one still waiting for its first byte.
        final = summaries.wait(lambda e: e["event"] == "rollout.summary" and
                               e["data"]["rollout"]["image"] == APP and e["data"]["rollout"]["done"] == 3,
                               what="the rollout summary with 3 nodes done")["data"]["rollout"]
        assert final["nodes"] == 4 and final["waiting"] == 1 and final["failed"] == 0
        assert final["totalBytes"] == 4 * 4 * MIB and final["downloadedBytes"] == 3 * 4 * MIB
        summaries.wait(lambda e: e["event"] == "rollout.summary" and
                       e["data"]["rollout"]["image"] == OTHER, what="the other image's summary")
        everything.wait(lambda e: e["event"] == "rollout.summary", what="a summary on the full stream")
        everything.wait(lambda e: e["event"] == "pull.completed" and e["data"]["pull"]["node"] == "node-02",
                        what="node-02's completion")
        one_node.wait(lambda e: e["event"] == "pull.completed", what="node-01's completion")
        app_only.wait(lambda e: e["event"] == "pull.completed" and e["data"]["pull"]["node"] == "node-02",
                      what="node-02's completion on the image stream")
        time.sleep(1.5)  # a summary per image per second at most: the last ones are out
    finally:
        for s in (summaries, app_only, one_node, everything):
            s.close()

    assert {e["event"] for e in summaries.events} == {"snapshot", "rollout.summary"}
    assert {e["event"] for e in app_only.events} <= {"snapshot", "pull.started", "pull.progress",
                                                     "pull.completed"}
    assert all(e["data"]["pull"]["image"] == APP for e in app_only.events if e["event"] != "snapshot")
    assert all(e["data"]["pull"]["node"] == "node-01" for e in one_node.events if "pull" in e["data"])
    # One event per pull per report: 4 + 1 pulls, 3 reports each.
    pull_events = [e for e in everything.events if e["event"].startswith("pull.")]
    assert len(pull_events) <= 5 * 3
    assert not [e for e in everything.events if e["event"].startswith("layer.")]
    # A pull's event carries the layers that moved (here all four at each report) by their
    # index, with their changing members only.
    progress = [e for e in everything.events if e["event"] == "pull.progress" and
                e["data"]["pull"]["node"] == "node-00"]
    assert progress and all("layers" not in e["data"]["pull"] for e in progress)
    assert all([c["index"] for c in e["data"]["layerChanges"]] == [0, 1, 2, 3] for e in progress)
    assert all(c["downloadedBytes"] == e["data"]["pull"]["downloadedBytes"] // 4 and "digest" not in c
               for e in progress for c in e["data"]["layerChanges"])
    # At most one summary per image a second (the server's 1 s tick publishes them).
    by_image = {}
    for e in summaries.events:
        if e["event"] == "rollout.summary":
            by_image.setdefault(e["data"]["rollout"]["image"], []).append(
                datetime.strptime(e["data"]["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp())
    for image, times in by_image.items():
        assert all(b - a >= 0.9 for a, b in zip(times, times[1:])), (image, times)

    # A resumed summaries stream replays summaries only.
    last = summaries.events[1]["id"]
    resumed = server.events(last_id=last, path="/api/v1/events?types=rollout.summary")
    try:
        resumed.wait(lambda e: e["event"] == "rollout.summary", what="a replayed summary")
        time.sleep(0.5)
        assert {e["event"] for e in resumed.events} == {"rollout.summary"}
    finally:
        resumed.close()

    r = requests.get(server.url + "/api/v1/events", params={"types": "pull.progress,,x"}, timeout=5)
    assert r.status_code == 400 and r.json()["field"] == "types"
