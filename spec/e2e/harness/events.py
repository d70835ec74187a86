"""The one reader of pulltrace-server's event stream (GET /api/v1/events) for the tests, the
demo and the benches.

A background thread reads the stream with the standard library's HTTP client (which undoes
the chunked transfer-encoding) and splits it into Server-Sent Events as the WHATWG
specification says: `field: value` lines, `data` lines joined with newlines, a blank line
dispatches, lines starting with `:` are comments. `events` holds every event in arrival
order as {"id": int or None, "event": type, "data": parsed JSON}; `comments` every comment
(heartbeats, the shutdown note). The reader owns its socket, so close() ends it at once.
"""

import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit


class EventStream:
    """GET `url`/api/v1/events, optionally resuming after `last_id` (Last-Event-ID).

    `read_timeout`: seconds without a byte after which the reader gives up (the server's
    heartbeats keep a quiet stream alive). `headers`: more request headers (e.g. an
    Authorization for PULLTRACE_READ_AUTH).
    """

    def __init__(self, url, last_id=None, read_timeout=60, path="/api/v1/events", headers=None,
                 ca=None):
        parts = urlsplit(url)
        self.events = []
        self.comments = []
        self.error = None       # what ended the reader, when it was not the server's clean end
        self.ended = False      # the reader stopped (the server closed, or close())
        self.closing = False
        self.cond = threading.Condition()
        if parts.scheme == "https":  # verified with the CA file `ca` (else the system's)
            self.conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=read_timeout,
                context=ssl.create_default_context(cafile=ca))
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                                   timeout=read_timeout)
        extra_headers, headers = headers, {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        headers.update(extra_headers or {})
        self.conn.request("GET", path, headers=headers)
        # Kept apart: http.client lets go of the connection's socket when the response
        # says it will close, but close() must still reach it.
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            body = self.resp.read(4096)
            self.conn.close()
            raise AssertionError(f"GET {path}: {self.resp.status} {body!r}")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- reading -------------------------------------------------------------------------
    def _run(self):
        buf = b""
        block = {"data": []}
        try:
            while True:
                data = self.resp.read1(65536)
                if not data:
                    break  # the terminating chunk: the server ended the stream
                buf += data
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    block = self._line(raw.decode().rstrip("\r"), block)
        except Exception as e:  # a broken stream, or close()
            if not self.closing:
                self.error = e
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def _line(self, line, block):
        """Feeds one line; returns the block being built (a new one after a dispatch)."""
        if line == "":
            if block["data"]:
                ev = {"id": int(block["id"]) if block.get("id", "").isdigit() else None,
                      "event": block.get("event", "message"),
                      "data": json.loads("\n".join(block["data"]))}
                with self.cond:
                    self.events.append(ev)
                    self.cond.notify_all()
            return {"data": []}
        if line.startswith(":"):
            with self.cond:
                self.comments.append(line[1:].strip())
                self.cond.notify_all()
            return block
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            block["data"].append(value)
        else:
            block[name] = value
        return block

    # -- queries -------------------------------------------------------------------------
    def wait(self, pred, timeout=30, what="event"):
        """The first event (in arrival order) for which pred(event) is true, waiting up to
        `timeout` seconds; AssertionError naming `what` and the last events otherwise."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(
                        f"no {what} within {timeout}s; saw "
                        f"{[(e['id'], e['event']) for e in self.events][-40:]}"
                        f"{' (stream ended: ' + repr(self.error) + ')' if self.ended else ''}")
                self.cond.wait(min(left, 0.5))

    def wait_comment(self, text, timeout=30):
        """Waits until the comment `text` (e.g. "heartbeat") arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while text not in self.comments:
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(f"no comment {text!r} within {timeout}s; saw "
                                         f"{self.comments[-10:]}")
                self.cond.wait(min(left, 0.5))

    def wait_end(self, timeout=10):
        """Waits until the server ends the stream; AssertionError when it is still open
        after `timeout` seconds or broke instead of ending."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"the event stream is still open after {timeout}s")
        if self.error is not None:
            raise AssertionError(f"the event stream broke instead of ending: {self.error!r}")

    def of(self, kind, pull=None):
        """The events of type `kind` so far; with `pull`, only those whose data's pull
        satisfies pull(data["pull"])."""
        with self.cond:
            return [e for e in self.events if e["event"] == kind and
                    (pull is None or ("pull" in e["data"] and pull(e["data"]["pull"])))]

    def last_id(self):
        with self.cond:
            return max(e["id"] for e in self.events)

    def close(self):
        """Ends the reader at once (shutting the socket down wakes its read)."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(5)
        self.resp.close()
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
