"""The demo's backend: burns CPU on request, so that the autoscaler has something to see.

GET /burn?ms=N   spin the CPU for N milliseconds (at most 2000), then answer
                 {"replica": "backend/0", "burned_ms": N}
GET /health      200 once listening

Python's standard library only. It listens on 127.0.0.1:$PORT, the port shoal gives each
replica, and names itself from SHOAL_SERVICE and SHOAL_REPLICA, which shoal sets too.
"""
import hashlib
import http.server
import json
import os
import time
import urllib.parse

REPLICA = f"{os.environ.get('SHOAL_SERVICE', 'backend')}/{os.environ.get('SHOAL_REPLICA', '0')}"


CHUNK = bytes(64 * 1024)


def burn(ms):
    """Keep a core busy for `ms` milliseconds of wall time: SHA-256 over 64 KiB at a time.
    hashlib lets go of Python's global lock while it hashes, so the replica's other threads
    (its health check above all) still get their turn; a plain busy loop would hold the lock
    and make the replica look dead to its checks when many requests burn at once."""
    until = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < until:
        hashlib.sha256(CHUNK).digest()
        n += 1
    return n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            return self.answer(200, {"ok": True})
        if url.path == "/burn":
            query = urllib.parse.parse_qs(url.query)
            try:
                ms = min(int(query.get("ms", ["100"])[0]), 2000)
            except ValueError:
                return self.answer(400, {"error": "ms must be a whole number of milliseconds"})
            burn(ms)
            return self.answer(200, {"replica": REPLICA, "burned_ms": ms})
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
