"""What the bookstore's Python services share: a request handler that answers JSON and keeps
quiet (shoal's access log already has a line per request), and a threading server with a deep
accept queue (a load test opens many connections at once). Standard library only.

    class Handler(JsonHandler):
        def do_GET(self):
            self.answer(200, {"ok": True})

    serve(Handler, port)
"""
import http.server
import json


class JsonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway reuses its connections
    disable_nagle_algorithm = True

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


def serve(handler, port):
    """Serve `handler` on 127.0.0.1:`port` until the process is stopped."""
    Server(("127.0.0.1", port), handler).serve_forever()
