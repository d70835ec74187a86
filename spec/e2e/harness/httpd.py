"""What the harness's own HTTP endpoints (the report receiver, the fake Kubernetes API
server) share: a request handler speaking HTTP/1.1 that answers with JSON."""

import json
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive, as the daemons' clients expect), no access log on stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, body):
        """Answers `status` with `body`: bytes as they are, anything else as JSON."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
