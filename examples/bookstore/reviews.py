"""The bookstore's reviews service (Python's standard library only, data in SQLite).

GET  /books/<id>        the book's reviews and average rating
POST /books/<id>        {"user": 1, "stars": 5, "text": "..."}: add a review
GET  /whoami            {"service": "reviews", "replica": "reviews/0"}
GET  /health            200 once listening
"""
import json
import os
import sqlite3
import threading
import urllib.parse

from jsonhttp import JsonHandler, serve

SERVICE = os.environ.get("SHOAL_SERVICE", "reviews")
REPLICA = f"{SERVICE}/{os.environ.get('SHOAL_REPLICA', '0')}"
DATA_DIR = os.environ.get("DATA_DIR", ".state")
DB = os.path.join(DATA_DIR, "bookstore.db")


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
        conn.execute("CREATE TABLE IF NOT EXISTS reviews (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                     "book INTEGER NOT NULL, user INTEGER NOT NULL, stars INTEGER NOT NULL, text TEXT)")
        conn.execute("INSERT OR IGNORE INTO reviews (id, book, user, stars, text) VALUES "
                     "(1, 1, 1, 5, 'Could not put it down'), (2, 1, 2, 4, 'Long, but worth it')")


class Handler(JsonHandler):
    def book(self):
        parts = [p for p in urllib.parse.urlsplit(self.path).path.split("/") if p]
        if len(parts) == 2 and parts[0] == "books" and parts[1].isdigit():
            return int(parts[1])
        return None

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            return self.answer(200, {"ok": True})
        if path == "/whoami":
            return self.answer(200, {"service": SERVICE, "replica": REPLICA})
        book = self.book()
        if book is None:
            return self.answer(404, {"error": f"no such path: {path}"})
        with db() as conn:
            rows = conn.execute("SELECT user, stars, text FROM reviews WHERE book=? ORDER BY id",
                                (book,)).fetchall()
        stars = [s for _, s, _ in rows]
        self.answer(200, {"book": book, "average": round(sum(stars) / len(stars), 2) if stars else None,
                          "reviews": [{"user": u, "stars": s, "text": t} for u, s, t in rows]})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        book = self.book()
        if book is None:
            return self.answer(404, {"error": f"no such path: {self.path}"})
        try:
            review = json.loads(body)
            user, stars, text = int(review["user"]), int(review["stars"]), str(review.get("text", ""))
            if not 1 <= stars <= 5:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": 'send {"user": ID, "stars": 1-5, "text": "..."}'})
        with db() as conn:
            conn.execute("INSERT INTO reviews (book, user, stars, text) VALUES (?, ?, ?, ?)",
                         (book, user, stars, text))
        self.answer(201, {"book": book, "user": user, "stars": stars})


if __name__ == "__main__":
    setup()
    serve(Handler, int(os.environ["PORT"]))
