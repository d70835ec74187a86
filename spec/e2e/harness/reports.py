"""The one builder of agent reports (docs/schemas/report-v1.json) for tests that stand in for
pulltrace-agent: report(pulls=[pull(layers=[layer(...)])]). Times are epoch seconds (None
for null), written as the agent writes them: RFC 3339, UTC, milliseconds. A pull's totals
are the sums of its layers'."""

import time
from datetime import datetime, timezone


def rfc3339(t=None):
    """Epoch seconds (now when None) as the agent writes a time: 2026-01-02T03:04:05.678Z."""
    d = datetime.fromtimestamp(time.time() if t is None else t, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _time(t):
    return None if t is None else rfc3339(t)


def sha256(n):
    """A well-formed sha256 digest made from the number `n` (distinct numbers, distinct
    digests)."""
    return f"sha256:{n:064x}"


def layer(digest, total, downloaded, state=None, media_type=None, started=None, updated=None):
    """One layer; `state` defaults to what the bytes say: done when all are there,
    downloading when some are, waiting when none are."""
    if state is None:
        state = "done" if downloaded == total else ("downloading" if downloaded else "waiting")
    return {"digest": digest, "mediaType": media_type, "totalBytes": total,
            "downloadedBytes": downloaded, "state": state,
            "startedAt": _time(started), "updatedAt": _time(updated)}


def pull(pull_id, image_ref, manifest_digest, layers, started, completed=None, index_digest=None):
    """One pull; totalBytes and downloadedBytes are the sums of its layers'."""
    return {"id": pull_id, "imageRef": image_ref, "manifestDigest": manifest_digest,
            "indexDigest": index_digest, "startedAt": _time(started),
            "completedAt": _time(completed), "totalKnown": True,
            "totalBytes": sum(x["totalBytes"] for x in layers),
            "downloadedBytes": sum(x["downloadedBytes"] for x in layers),
            "layers": layers}


def report(node, seq, pulls, boot="boot-1", agent_version="e2e", timestamp=None):
    """A v1 report of node `node` with sequence number `seq`, sent now unless `timestamp`."""
    return {"schemaVersion": "v1", "nodeName": node, "agentVersion": agent_version,
            "bootId": boot, "seq": seq, "timestamp": rfc3339(timestamp), "pulls": pulls,
            "unattributed": []}
