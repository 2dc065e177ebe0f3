"""The bookstore's fulfilment worker: consumes `order.placed` events from RabbitMQ's
`orders` queue and ships each order once (a row in SQLite's `shipments`), then acks it.
Python's standard library only (amqp.py is the AMQP client).

A `kind: worker` service: no port, no requests; shoal supervises it. An event delivered
twice (users publishes at least once; a worker killed before its ack gets its messages
redelivered) ships nothing twice: `INSERT OR IGNORE` on the order id.
"""
import json
import os
import sqlite3
import time

import amqp

WORKER = f"fulfilment/{os.environ.get('SHOAL_REPLICA', '0')}"
DB = os.path.join(os.environ.get("DATA_DIR", ".state"), "bookstore.db")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5673/%2f")


def main():
    os.makedirs(os.path.dirname(DB), exist_ok=True)
    conn = sqlite3.connect(DB, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS shipments (order_id INTEGER PRIMARY KEY, worker TEXT, at REAL)")
    while True:
        try:
            broker = amqp.Connection(AMQP_URL)
            broker.declare("orders")
            print(f"{WORKER}: consuming `orders`", flush=True)
            for tag, body in broker.consume("orders", prefetch=20):
                event = json.loads(body)
                conn.execute("INSERT OR IGNORE INTO shipments (order_id, worker, at) VALUES (?, ?, ?)",
                             (event["order"], WORKER, time.time()))
                broker.ack(tag)
        except (OSError, amqp.AmqpError) as e:
            print(f"{WORKER}: RabbitMQ: {e}; reconnecting", flush=True)  # not up yet, or restarted
            time.sleep(0.5)


if __name__ == "__main__":
    main()
