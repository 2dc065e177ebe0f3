"""The demo's frontend: one page (index.html) with two buttons that call the backend
through the gateway, and a list of which backend replica answered each call.

Python's standard library only; listens on 127.0.0.1:$PORT.
"""
import functools
import http.server
import os


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    here = os.path.dirname(os.path.abspath(__file__))
    handler = functools.partial(Handler, directory=os.path.join(here, "page"))
    print(f"frontend listening on 127.0.0.1:{port}", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
