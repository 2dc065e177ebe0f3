"""One of music-share's services (users, music or social: SHOAL_SERVICE says which).

GET /health          200 once listening
GET /whoami          {"service": "users", "replica": "users/2"}
GET /                the service's sample records, e.g. {"service": "music", "items": [...]}
GET /work?cpu_ms=N   keep a core busy for N ms (at most 2000), for the autoscaler to see
GET /status?code=N   answer with status N (a failure drill for the dashboards)

Python's standard library only. It listens on 127.0.0.1:$PORT, the port shoal gives each
replica; shoal also sets SHOAL_SERVICE and SHOAL_REPLICA.
"""
import hashlib
import http.server
import json
import os
import time
import urllib.parse

SERVICE = os.environ.get("SHOAL_SERVICE", "users")
REPLICA = f"{SERVICE}/{os.environ.get('SHOAL_REPLICA', '0')}"
ITEMS = {
    "users": [{"id": 1, "name": "ana"}, {"id": 2, "name": "bo"}, {"id": 3, "name": "chen"}],
    "music": [{"id": 10, "title": "Blue in Green", "by": "ana"}, {"id": 11, "title": "So What", "by": "bo"}],
    "social": [{"user": 1, "likes": 10}, {"user": 2, "follows": 3}],
}
CHUNK = bytes(64 * 1024)


def burn(ms):
    """SHA-256 over 64 KiB at a time until `ms` have passed: CPU work that lets the
    replica's other threads (its health check) run meanwhile."""
    until = time.perf_counter() + ms / 1000
    while time.perf_counter() < until:
        hashlib.sha256(CHUNK).digest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        number = lambda name, default: int(query.get(name, [str(default)])[0])
        try:
            if url.path == "/health":
                return self.answer(200, {"ok": True})
            if url.path == "/whoami":
                return self.answer(200, {"service": SERVICE, "replica": REPLICA})
            if url.path == "/":
                return self.answer(200, {"service": SERVICE, "items": ITEMS.get(SERVICE, [])})
            if url.path == "/work":
                ms = min(number("cpu_ms", 10), 2000)
                burn(ms)
                return self.answer(200, {"replica": REPLICA, "cpu_ms": ms})
            if url.path == "/status":
                code = number("code", 200)
                if not 200 <= code <= 599:
                    return self.answer(400, {"error": "code must be 200-599"})
                return self.answer(code, {"replica": REPLICA, "status": code})
        except ValueError:
            return self.answer(400, {"error": "numbers only, please"})
        self.answer(404, {"error": f"no such path: {url.path}"})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"{REPLICA} listening on 127.0.0.1:{port}", flush=True)
    Server(("127.0.0.1", port), Handler).serve_forever()
