"""The example's event service: stores what it receives, serves it back.

POST /events/orders stores the event exactly as it arrived (sealed by Envoy) under its
data.order_id; GET /events/orders/<order_id> returns it. Listens on 127.0.0.1 only.
Usage: python upstream.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def read_body(self):
        # The filter rewrites bodies, so Envoy forwards them chunked.
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.read_body()
        if self.path != "/events/orders":
            return self.answer(404)
        try:
            order_id = json.loads(body)["data"]["order_id"]
        except (ValueError, KeyError, TypeError):
            return self.answer(400)
        EVENTS[order_id] = body
        self.answer(202, json.dumps({"stored": order_id}).encode())

    def do_GET(self):
        prefix = "/events/orders/"
        event = EVENTS.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if event is None:
            return self.answer(404)
        self.answer(200, event)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        sys.stderr.write("upstream: %s\n" % (format % args))


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
