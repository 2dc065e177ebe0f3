"""The bookstore's payment service in Python (standard library only); payment.rs is its
twin in Rust, and the gateway splits charges between the two by weight.

GET  /health           200 while the process runs (even while charges fail: the card
                       network is down, not this process)
POST /charge           {"paid": true, "by": "payment-py", "charge": "py-7"}; with an
                       Idempotency-Key, the same key gets the same charge
POST /admin/fail?on=1  from now on, charges wait 100 ms and fail with 503 (on=0 heals)

It listens on 127.0.0.1:$PAYMENT_PORT.
"""
import itertools
import json
import os
import threading
import time
import urllib.parse

from jsonhttp import JsonHandler, serve

failing = threading.Event()
counter = itertools.count(1)
by_key = {}
lock = threading.Lock()


class Handler(JsonHandler):
    def do_GET(self):
        if self.path == "/health":
            return self.answer(200, {"ok": True})
        self.answer(404, {"error": f"no such path: {self.path}"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/admin/fail":
            on = urllib.parse.parse_qs(url.query).get("on") == ["1"]
            failing.set() if on else failing.clear()
            print(f"payment-py: failing = {on}", flush=True)
            return self.answer(200, {"by": "payment-py", "failing": on})
        if url.path == "/charge":
            if failing.is_set():
                time.sleep(0.1)  # the card network times out
                return self.answer(503, {"error": "card network unavailable", "by": "payment-py"})
            key = self.headers.get("idempotency-key")
            with lock:
                charge = by_key.setdefault(key, next(counter)) if key else next(counter)
            return self.answer(200, {"paid": True, "by": "payment-py", "charge": f"py-{charge}"})
        self.answer(404, {"error": f"no such path: {url.path}"})


if __name__ == "__main__":
    port = int(os.environ.get("PAYMENT_PORT", "9101"))
    print(f"payment-py listening on 127.0.0.1:{port}", flush=True)
    serve(Handler, port)
