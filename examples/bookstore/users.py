"""The bookstore's users service: accounts and checkout (Python's standard library only).

GET  /                  the users
GET  /whoami            {"service": "users", "replica": "users/1"}
POST /<user>/orders     {"book": 3}: store the order (SQLite), charge it through the
                        gateway's /api/payment (exponential back-off, below), and once
                        paid, announce it on RabbitMQ's `orders` queue for fulfilment
GET  /orders            counts: {"placed": 20, "paid": 18, "failed": 2, "shipped": 18}
GET  /orders/<id>       one order, with its payment and whether it has shipped
GET  /health            200 once listening

Retries: the gateway retries a failed charge at once on the other payment server (it has
an Idempotency-Key, so that is safe); this service retries on top, with exponential
back-off and jitter (100, 200, 400 ms), and stops at once when the gateway says the
payment circuit is open (`X-Shoal-Error: circuit-open`): no point knocking.

Events: an order that is paid is written to an outbox table in the same transaction; a
thread publishes the outbox to RabbitMQ (publisher confirms) and marks it sent, so an
order is announced even if RabbitMQ was down when it was placed (at least once: the
fulfilment worker ignores duplicates).
"""
import http.client
import json
import os
import random
import sqlite3
import threading
import time
import urllib.parse

import amqp
from jsonhttp import JsonHandler, serve

SERVICE = os.environ.get("SHOAL_SERVICE", "users")
REPLICA = f"{SERVICE}/{os.environ.get('SHOAL_REPLICA', '0')}"
DATA_DIR = os.environ.get("DATA_DIR", ".state")
DB = os.path.join(DATA_DIR, "bookstore.db")
PAYMENT = urllib.parse.urlsplit(os.environ.get("PAYMENT_URL", "http://127.0.0.1:8000/api/payment"))
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5673/%2f")
BACKOFF = [0.1, 0.2, 0.4]  # seconds before the 2nd, 3rd and 4th try
USERS = [(1, "ana"), (2, "bo"), (3, "chen")]
outbox_ready = threading.Event()


local = threading.local()


def db():
    """This thread's SQLite connection (a thread serves one client connection at a time;
    a connection per request costs 4x the time and doubles the memory)."""
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = sqlite3.connect(DB, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    return conn


def setup():
    os.makedirs(DATA_DIR, exist_ok=True)
    with db() as conn:
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS orders (
                id INTEGER PRIMARY KEY AUTOINCREMENT, user INTEGER NOT NULL, book INTEGER NOT NULL,
                status TEXT NOT NULL, charge TEXT, paid_by TEXT, attempts INTEGER, replica TEXT);
            CREATE TABLE IF NOT EXISTS outbox (order_id INTEGER PRIMARY KEY, replica TEXT NOT NULL,
                body TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS shipments (order_id INTEGER PRIMARY KEY, worker TEXT, at REAL);
            """
        )
        conn.executemany("INSERT OR IGNORE INTO users (id, name) VALUES (?, ?)", USERS)


def charge(order, amount):
    """Charges `order` through the gateway, retrying with exponential back-off.
    Returns (answer or None, tries, last error)."""
    key = f"order-{order}"
    error = None
    for attempt in range(len(BACKOFF) + 1):
        if attempt:
            time.sleep(BACKOFF[attempt - 1] * random.uniform(0.5, 1.0))  # jitter
        try:
            conn = http.client.HTTPConnection(PAYMENT.hostname, PAYMENT.port, timeout=5)
            body = json.dumps({"order": order, "amount": amount})
            conn.request("POST", PAYMENT.path + "/charge", body,
                         {"content-type": "application/json", "idempotency-key": key})
            r = conn.getresponse()
            data = r.read()
            conn.close()
            if r.status == 200:
                return json.loads(data), attempt + 1, None
            error = f"payment answered {r.status}"
            if r.getheader("x-shoal-error") == "circuit-open":
                return None, attempt + 1, error + " (circuit open)"
            if r.status not in (502, 503, 504):
                return None, attempt + 1, error
        except OSError as e:
            error = f"payment unreachable: {e}"
    return None, len(BACKOFF) + 1, error


def place_order(user, book):
    with db() as conn:
        order = conn.execute(
            "INSERT INTO orders (user, book, status, replica) VALUES (?, ?, 'placed', ?)",
            (user, book, REPLICA)).lastrowid
    paid, tries, error = charge(order, 1200 + 100 * book)
    with db() as conn:
        conn.execute("BEGIN IMMEDIATE")
        if paid:
            conn.execute("UPDATE orders SET status='paid', charge=?, paid_by=?, attempts=? WHERE id=?",
                         (paid["charge"], paid["by"], tries, order))
            event = {"event": "order.placed", "order": order, "user": user, "book": book}
            conn.execute("INSERT INTO outbox (order_id, replica, body) VALUES (?, ?, ?)",
                         (order, REPLICA, json.dumps(event)))
        else:
            conn.execute("UPDATE orders SET status='failed', attempts=? WHERE id=?", (tries, order))
        conn.execute("COMMIT")
    if paid:
        outbox_ready.set()
        return 201, {"order": order, "status": "paid", "paid_by": paid["by"], "attempts": tries}
    return 503, {"order": order, "status": "failed", "error": error, "attempts": tries}


def publisher():
    """Publishes this replica's unsent outbox rows to RabbitMQ, reconnecting as needed."""
    broker = None
    while True:
        outbox_ready.wait(timeout=1)
        outbox_ready.clear()
        try:
            with db() as conn:
                rows = conn.execute("SELECT order_id, body FROM outbox WHERE sent=0 AND replica=? "
                                    "ORDER BY order_id", (REPLICA,)).fetchall()
            if not rows:
                continue
            if broker is None:
                broker = amqp.Connection(AMQP_URL)
                broker.declare("orders")
            for order, body in rows:
                broker.publish("orders", body.encode())
                with db() as conn:
                    conn.execute("UPDATE outbox SET sent=1 WHERE order_id=?", (order,))
        except (OSError, amqp.AmqpError, sqlite3.Error) as e:
            print(f"{REPLICA}: outbox: {e}; retrying", flush=True)
            if broker:
                broker.close()
            broker = None
            time.sleep(0.5)


class Handler(JsonHandler):
    def do_GET(self):
        parts = [p for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
        if parts == ["health"]:
            return self.answer(200, {"ok": True})
        if parts == ["whoami"]:
            return self.answer(200, {"service": SERVICE, "replica": REPLICA})
        with db() as conn:
            if parts == []:
                rows = conn.execute("SELECT id, name FROM users ORDER BY id").fetchall()
                return self.answer(200, [{"id": i, "name": n} for i, n in rows])
            if parts == ["orders"]:
                counts = dict(conn.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall())
                shipped, = conn.execute("SELECT COUNT(*) FROM shipments").fetchone()
                return self.answer(200, {"placed": sum(counts.values()), "paid": counts.get("paid", 0),
                                         "failed": counts.get("failed", 0), "shipped": shipped})
            if len(parts) == 2 and parts[0] == "orders" and parts[1].isdigit():
                row = conn.execute(
                    "SELECT o.id, o.user, o.book, o.status, o.charge, o.paid_by, o.attempts, s.worker "
                    "FROM orders o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id=?",
                    (int(parts[1]),)).fetchone()
                if not row:
                    return self.answer(404, {"error": "no such order"})
                keys = ["order", "user", "book", "status", "charge", "paid_by", "attempts", "shipped_by"]
                return self.answer(200, dict(zip(keys, row)))
        self.answer(404, {"error": f"no such path: {self.path}"})

    def do_POST(self):
        parts = [p for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if len(parts) == 2 and parts[0].isdigit() and parts[1] == "orders":
            try:
                book = int(json.loads(body or b"{}").get("book", 1))
            except (ValueError, AttributeError):
                return self.answer(400, {"error": 'send {"book": ID}'})
            return self.answer(*place_order(int(parts[0]), book))
        self.answer(404, {"error": f"no such path: {self.path}"})


if __name__ == "__main__":
    setup()
    threading.Thread(target=publisher, daemon=True).start()
    serve(Handler, int(os.environ["PORT"]))
