"""A plain static file server for `site/`: Python's standard library and nothing else.

The same server as `python3 -m http.server`, with four settings changed for 100 users:
HTTP/1.1 keep-alive (so the gateway reuses its connections instead of opening one per
request), each response written whole in one write (the standard library writes the head
and the body apart: a replica killed between the two leaves a response half sent, which no
proxy can take back, and with keep-alive the second write would wait 40 ms for the
client's delayed acknowledgement of the first), no Nagle delay, and a listen backlog of
1024 (the standard library's default of 5 drops new connections when many arrive at
once). It listens on 127.0.0.1:$PORT, the port shoal gives
each replica.
"""
import functools
import http.server
import os


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # head and body leave together, on the flush after each request

    def log_message(self, format, *args):
        pass  # quiet: shoal keeps each replica's output, and 100 users make a lot of it


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    handler = functools.partial(Handler, directory=os.path.join(os.path.dirname(__file__), "site"))
    print(f"serving site/ on 127.0.0.1:{port}", flush=True)
    Server(("127.0.0.1", port), handler).serve_forever()
