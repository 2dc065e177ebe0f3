#!/usr/bin/env python3
"""The Black Friday ingest API: takes sales as JSON and appends them to a Redis Stream.

    POST /sales   {"id": "...", "product": "...", "amount": 12.5}  -> 202 {"stream_id", "id"}
                  (fields missing from the body may be given in the query: /sales?product=tv)
    GET  /stats   accepted sales, the consumer group's lag, consumers, totals per product
    GET  /health  200 once Redis answers and the consumer group exists
    GET  /        a live page drawn from /stats every second

Listens on 127.0.0.1:$PORT (shoal sets PORT per replica). Environment: REDIS_URL
(default redis://127.0.0.1:6391), STREAM (sales), GROUP (aggregators), INGEST_MS (0): time
each sale takes before it is accepted (a payment authorisation, say), to give a closed-model
load a realistic rate.

Each accepted sale is one stream entry: XADD and the `accepted` counter are one
MULTI/EXEC, so the counter always equals the entries added. The `id` is optional and kept
in the entry; the API assigns one when it is missing. A sale is one accepted request: the
aggregator's idempotence is per stream entry, which is what a redelivery repeats.
"""

import json
import math
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6391")
STREAM = os.environ.get("STREAM", "sales")
GROUP = os.environ.get("GROUP", "aggregators")
INGEST_MS = float(os.environ.get("INGEST_MS", "0"))
REPLICA = f"{os.environ.get('SHOAL_SERVICE', 'ingest')}/{os.environ.get('SHOAL_REPLICA', '0')}"

# Keys shared with aggregator.py.
ACCEPTED = f"{STREAM}:accepted"  # counter: sales accepted (== entries added)
COUNTS = f"{STREAM}:count"  # hash: product -> sales counted
CENTS = f"{STREAM}:cents"  # hash: product -> amount counted, in cents
PROCESSED = f"{STREAM}:processed"  # counter: sales counted (each entry once)
DUPLICATES = f"{STREAM}:duplicates"  # counter: redeliveries recognised and skipped

MAX_BODY = 64 * 1024

db = redis.Redis.from_url(
    REDIS_URL, decode_responses=True, socket_timeout=5, socket_connect_timeout=1
)
group_ready = False


def ensure_group():
    """Create the stream and its consumer group (from the first entry) if missing."""
    global group_ready
    if group_ready:
        return
    try:
        db.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    group_ready = True


def parse_sale(body, query):
    """The sale in a request body, or raise ValueError saying what is wrong. Fields missing
    from the body are taken from the query string (`/sales?product=tv`), so that a load
    generator sending one body can vary the product by URL."""
    try:
        sale = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"body is not JSON: {e}") from None
    if not isinstance(sale, dict):
        raise ValueError("body must be a JSON object")
    for field, values in parse_qs(query).items():
        if field in ("id", "product"):
            sale.setdefault(field, values[0])
        elif field == "amount":
            try:
                sale.setdefault(field, float(values[0]))
            except ValueError:
                raise ValueError("amount: a number from 0 to 1e9 is required") from None
    product = sale.get("product")
    if not isinstance(product, str) or not 1 <= len(product) <= 100:
        raise ValueError("product: a string of 1 to 100 characters is required")
    amount = sale.get("amount")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not math.isfinite(amount)
        or not 0 <= amount <= 1e9
    ):
        raise ValueError("amount: a number from 0 to 1e9 is required")
    sale_id = sale.get("id")
    if sale_id is None:
        sale_id = uuid.uuid4().hex
    if not isinstance(sale_id, str) or not 1 <= len(sale_id) <= 100:
        raise ValueError("id: a string of 1 to 100 characters, or left out")
    return sale_id, product, round(amount * 100)


def stats():
    """Everything the live page shows, read from Redis."""
    pipe = db.pipeline(transaction=False)
    pipe.get(ACCEPTED)
    pipe.get(PROCESSED)
    pipe.get(DUPLICATES)
    pipe.hgetall(COUNTS)
    pipe.hgetall(CENTS)
    accepted, processed, duplicates, counts, cents = pipe.execute()
    group, consumers = {}, []
    try:
        group = next((g for g in db.xinfo_groups(STREAM) if g["name"] == GROUP), {})
        consumers = db.xinfo_consumers(STREAM, GROUP) if group else []
    except redis.ResponseError:
        pass  # no stream yet
    return {
        "time": time.time(),
        "replica": REPLICA,
        "accepted": int(accepted or 0),
        "processed": int(processed or 0),
        "duplicates_skipped": int(duplicates or 0),
        "lag": group.get("lag"),
        "pending": group.get("pending", 0),
        "consumers": len(consumers),
        # Consumers that read within the last 3 s (a blocked read counts as reading).
        "active_consumers": sum(1 for c in consumers if c.get("idle", 0) < 3000),
        "totals": {
            p: {"count": int(n), "amount": int(cents.get(p, 0)) / 100}
            for p, n in sorted(counts.items())
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the gateway

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass  # one line per request would cost more than the request

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/health":
                db.ping()
                ensure_group()
                self.answer(200, {"ok": True, "replica": REPLICA})
            elif path == "/stats":
                self.answer(200, stats())
            elif path == "/":
                self.answer(200, PAGE, "text/html; charset=utf-8")
            else:
                self.answer(404, {"error": f"no such path: {path}"})
        except redis.RedisError as e:
            self.answer(503, {"error": f"redis: {e}"})

    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return self.answer(413, {"error": f"body over {MAX_BODY} bytes"})
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        if path != "/sales":
            return self.answer(404, {"error": f"no such path: {path}"})
        try:
            sale_id, product, cents = parse_sale(body, query)
        except ValueError as e:
            return self.answer(400, {"error": str(e)})
        if INGEST_MS:
            time.sleep(INGEST_MS / 1000)
        try:
            pipe = db.pipeline(transaction=True)
            pipe.xadd(STREAM, {"id": sale_id, "product": product, "cents": cents})
            pipe.incr(ACCEPTED)
            entry_id, _ = pipe.execute()
        except redis.RedisError as e:
            return self.answer(503, {"error": f"redis: {e}"})
        self.answer(202, {"stream_id": entry_id, "id": sale_id})


PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>Black Friday</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em; }
 .big { display: flex; gap: 2em; } .big div { font-size: 2em; }
 .big small { display: block; font-size: 0.45em; color: #666; }
 table { border-collapse: collapse; margin-top: 1.5em; }
 td, th { padding: 0.2em 1em; text-align: right; } th:first-child, td:first-child { text-align: left; }
</style>
<h1>Black Friday</h1>
<div class="big">
 <div id="sales">-<small>sales/s accepted</small></div>
 <div id="done">-<small>sales/s counted</small></div>
 <div id="lag">-<small>lag (messages)</small></div>
 <div id="consumers">-<small>consumers</small></div>
</div>
<p id="line"></p>
<table><thead><tr><th>product</th><th>sales</th><th>amount</th></tr></thead><tbody id="totals"></tbody></table>
<script>
let last = null;
const $ = (id) => document.getElementById(id);
async function tick() {
  try {
    const s = await (await fetch("stats")).json();
    if (last) {
      const dt = s.time - last.time;
      $("sales").firstChild.data = ((s.accepted - last.accepted) / dt).toFixed(0);
      $("done").firstChild.data = ((s.processed - last.processed) / dt).toFixed(0);
    }
    $("lag").firstChild.data = s.lag ?? "?";
    $("consumers").firstChild.data = s.active_consumers;
    $("line").textContent = `accepted ${s.accepted}, counted ${s.processed}, pending ${s.pending}, ` +
      `redeliveries skipped ${s.duplicates_skipped} (answered by ${s.replica})`;
    $("totals").innerHTML = Object.entries(s.totals).map(([p, t]) =>
      `<tr><td>${p.replace(/[&<>]/g, "")}</td><td>${t.count}</td><td>${t.amount.toFixed(2)}</td></tr>`).join("");
    last = s;
  } catch (e) { $("line").textContent = "no answer: " + e; }
}
tick(); setInterval(tick, 1000);
</script>
"""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the gateway may open many connections at once


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"{REPLICA}: listening on 127.0.0.1:{port}, stream {STREAM!r} at {REDIS_URL}", flush=True)
    Server(("127.0.0.1", port), Handler).serve_forever()
