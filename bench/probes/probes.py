#!/usr/bin/env python3
"""Request-smuggling / HTTP/1.1 framing probes for shoal, nginx and HAProxy.

Each proxy forwards to one raw upstream (a Python thread server in this file) on
loopback. Every probe sends the same raw bytes to each proxy on a fresh client
connection and records:

  * what the client got back: the responses it could parse (status lines, framing,
    bodies) and how the connection ended (open / closed / reset / timeout);
  * what the upstream got: the exact bytes per upstream connection, the requests a
    lenient HTTP/1.1 parser finds in them (request lines, headers, body sizes) and any
    parse error or incomplete tail.

Between probes every upstream connection is half-closed and then closed, so that no
probe sees bytes left over from another one (the proxies drop their idle pooled
connections when they see the FIN).

Python 3 standard library only. Loopback only, OS-assigned ports, a 2 s timeout on
every socket operation, deadlines instead of fixed sleeps. See README.md.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
SOCK_TIMEOUT = 2.0      # every socket operation
QUIET = 0.3             # after the expected responses: wait this long for more
UPSTREAM_QUIET = 0.25   # upstream: no new bytes for this long = the probe is over there
POLL = 0.05
SMUGGLE_MARK = b"/smuggled"
EVIL = b"HTTP/1.1 299 EVIL\r\nContent-Length: 0\r\n\r\n"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def esc(b, limit=4096):
    """Bytes as a readable escaped string (Python bytes-literal escapes); long
    values keep their head and tail."""
    if b is None:
        return None
    if len(b) <= limit:
        return repr(bytes(b))[2:-1]
    head, tail = b[: limit // 2], b[-512:]
    return "%s...<%d bytes omitted>...%s" % (repr(head)[2:-1], len(b) - len(head) - len(tail), repr(tail)[2:-1])


def blob(b):
    return {"len": len(b), "sha256": hashlib.sha256(b).hexdigest(), "escaped": esc(b)}


# --------------------------------------------------------------------------
# Minimal HTTP/1.x message parsing (shared by the upstream and the client side)


class ParseError(Exception):
    pass


HEAD_END = re.compile(rb"\r?\n\r?\n")


def split_head(buf, pos):
    """-> (head bytes, index after the blank line) or None if incomplete."""
    m = HEAD_END.search(buf, pos)
    if not m:
        return None
    return buf[pos:m.start()], m.end()


def parse_fields(lines):
    """Header lines -> [(name, value)]. Lenient like many backends: obs-fold lines
    are joined to the previous value, whitespace around the name is stripped."""
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            n, v = fields[-1]
            fields[-1] = (n, v + b" " + line.strip())
            continue
        if b":" not in line:
            raise ParseError("header line without colon: %s" % esc(line[:80]))
        n, v = line.split(b":", 1)
        fields.append((n.strip(), v.strip(b" \t")))
    return fields


def values(fields, name):
    return [v for n, v in fields if n.lower() == name]


def is_chunked(fields):
    return any(tok.strip().lower() == b"chunked"
               for v in values(fields, b"transfer-encoding") for tok in v.split(b","))


def parse_chunked(buf, pos):
    """-> (decoded body, index after the trailer) or None if incomplete."""
    body = b""
    while True:
        m = re.compile(rb"\r?\n").search(buf, pos)
        if not m:
            return None
        line = buf[pos:m.start()]
        size_tok = line.split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]+", size_tok or b"-"):
            raise ParseError("bad chunk size line: %s" % esc(line[:80]))
        size = int(size_tok, 16)
        pos = m.end()
        if size == 0:
            while True:  # trailer section, up to an empty line
                m = re.compile(rb"\r?\n").search(buf, pos)
                if not m:
                    return None
                empty = m.start() == pos
                pos = m.end()
                if empty:
                    return body, pos
        if len(buf) < pos + size + 1:
            return None
        body += buf[pos:pos + size]
        pos += size
        if buf[pos:pos + 2] == b"\r\n":
            pos += 2
        elif buf[pos:pos + 1] == b"\n":
            pos += 1
        elif len(buf) < pos + 2:
            return None
        else:
            raise ParseError("chunk data not followed by CRLF")


def content_length(fields):
    cls = values(fields, b"content-length")
    if not cls:
        return None
    toks = {t.strip() for v in cls for t in v.split(b",")}
    if len(toks) != 1:
        raise ParseError("conflicting Content-Length: %s" % esc(b" | ".join(cls)))
    tok = toks.pop()
    if not tok.isdigit():
        raise ParseError("invalid Content-Length: %s" % esc(tok))
    return int(tok)


def parse_request(buf, pos):
    """Upstream side. -> (request dict, next pos) or None if incomplete."""
    while buf[pos:pos + 2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
        pos += 2
    h = split_head(buf, pos)
    if not h:
        return None
    head, end = h
    lines = re.split(rb"\r?\n", head)
    fields = parse_fields(lines[1:])
    if is_chunked(fields):
        r = parse_chunked(buf, end)
        if r is None:
            return None
        body, nxt = r
        framing = "chunked"
    else:
        n = content_length(fields)
        if n is None:
            n, framing = 0, "none"
        else:
            framing = "content-length"
        if len(buf) < end + n:
            return None
        body, nxt = buf[end:end + n], end + n
    return {"line": lines[0], "fields": fields, "head": head, "framing": framing,
            "body": body, "raw": buf[pos:nxt]}, nxt


STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})(?: [^\r\n]*)?")


def parse_responses(buf, eof, final=False):
    """Client side. -> (responses, leftover bytes, problem or None).
    `final`: the capture is over; a response without CL or chunked whose connection
    is still open is returned with framing "UNFRAMED" and the rest of the capture as
    its body (a real client would wait for the close and take everything as body)."""
    out, pos = [], 0
    while pos < len(buf):
        h = split_head(buf, pos)
        if not h:
            rest = buf[pos:pos + 5]
            if not (rest.startswith(b"HTTP/") or b"HTTP/".startswith(rest)):
                return out, buf[pos:], "garbage"
            return out, buf[pos:], "incomplete head"
        head, end = h
        lines = re.split(rb"\r?\n", head)
        m = STATUS_LINE.fullmatch(lines[0])
        if not m:
            return out, buf[pos:], "garbage"
        code = int(m.group(1))
        try:
            fields = parse_fields(lines[1:])
        except ParseError as e:
            return out, buf[pos:], "bad response head: %s" % e
        resp = {"status_line": lines[0].decode("latin-1"), "code": code,
                "headers": [(n.decode("latin-1"), esc(v, 200)) for n, v in fields]}
        if 100 <= code < 200 or code in (204, 304):
            resp["framing"], body, nxt = "none", b"", end
        elif is_chunked(fields):
            try:
                r = parse_chunked(buf, end)
            except ParseError as e:
                return out, buf[pos:], "bad chunked response: %s" % e
            if r is None:
                return out, buf[pos:], "incomplete chunked body"
            body, nxt = r
            resp["framing"] = "chunked"
        else:
            try:
                n = content_length(fields)
            except ParseError as e:
                return out, buf[pos:], "ambiguous response framing: %s" % e
            if n is None:
                if not eof and not final:
                    return out, buf[pos:], "body until close (connection still open)"
                body, nxt = buf[end:], len(buf)
                resp["framing"] = "close" if eof else "UNFRAMED"
            else:
                if len(buf) < end + n:
                    return out, buf[pos:], "incomplete body"
                body, nxt = buf[end:end + n], end + n
                resp["framing"] = "cl"
        resp["body"] = esc(body, 1024)
        resp["body_len"] = len(body)
        resp["_body"] = body
        out.append(resp)
        pos = nxt
    return out, b"", None


# --------------------------------------------------------------------------
# The raw upstream


def scripted(name):
    if name == b"conn-cl":
        body = b"twenty-three-bytes-body"
        assert len(body) == 23
        return b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 23\r\n\r\n" + body
    if name == b"conn-te":
        return (b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n")
    if name == b"cl-te":
        body = b"5\r\nhello\r\n0\r\n\r\n" + EVIL
        return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)) + body
    if name == b"cl-cl":
        body = b"hello" + EVIL
        return (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    return None


class Conn:
    def __init__(self, cid, sock, upstream):
        self.id, self.sock, self.up = cid, sock, upstream
        self.buf = bytearray()
        self.pos = 0
        self.events = []       # (probe, kind, data)
        self.error = None
        self.closing = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def log(self, kind, data):
        with self.up.lock:
            self.events.append((self.up.probe, kind, data))
            self.up.last_rx = time.monotonic()

    def run(self):
        s = self.sock
        s.settimeout(0.1)  # short polls so a half-close by teardown is noticed; < SOCK_TIMEOUT
        try:
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    if self.closing and time.monotonic() > self.close_deadline:
                        self.log("note", "peer did not close after our FIN; closing")
                        break
                    continue
                except OSError as e:
                    self.log("note", "recv error: %s" % e)
                    break
                if not data:
                    self.log("eof", None)
                    break
                self.log("rx", data)
                self.buf += data
                if self.error is None:
                    self.consume()
        finally:
            try:
                s.close()
            except OSError:
                pass
            self.done.set()

    def consume(self):
        while self.pos < len(self.buf):
            try:
                r = parse_request(bytes(self.buf), self.pos)
            except ParseError as e:
                self.error = str(e)
                self.log("error", str(e))
                self.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if r is None:
                return
            req, self.pos = r
            self.log("req", req)
            target = req["line"].split(b" ")
            path = target[1] if len(target) > 1 else b""
            if path.startswith(b"/resp/"):
                resp = scripted(path[len(b"/resp/"):])
            else:
                resp = None
            if resp is None:
                resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(req["line"]), req["line"])
            self.send(resp)

    def send(self, data):
        try:
            self.sock.settimeout(SOCK_TIMEOUT)
            self.sock.sendall(data)
            self.log("tx", data)
        except OSError as e:
            self.log("note", "send error: %s" % e)
        finally:
            self.sock.settimeout(0.1)


class Upstream:
    def __init__(self):
        self.lock = threading.Lock()
        self.conns = []
        self.probe = None
        self.last_rx = time.monotonic()
        self.stop = False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(128)
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self):
        while not self.stop:
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                c = Conn(len(self.conns) + 1, s, self)
                c.opened_in = self.probe
                self.conns.append(c)
                self.last_rx = time.monotonic()
            c.thread.start()

    def begin(self, probe):
        with self.lock:
            self.probe = probe

    def wait_quiet(self, max_wait=1.5):
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            with self.lock:
                idle = time.monotonic() - self.last_rx
            if idle >= UPSTREAM_QUIET:
                return True
            time.sleep(POLL)
        return False

    def teardown(self, max_wait=1.5):
        """Half-close every open upstream connection and wait (with a deadline) for the
        proxy to close its side; then the connection threads close the sockets."""
        deadline = time.monotonic() + max_wait
        with self.lock:
            live = [c for c in self.conns if not c.done.is_set()]
        for c in live:
            c.close_deadline = deadline
            c.closing = True
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        for c in live:
            c.done.wait(max(0.0, deadline - time.monotonic()) + 0.3)
        with self.lock:
            self.probe = None

    def record(self, probe):
        """Everything the upstream saw during `probe`."""
        conns = []
        with self.lock:
            for c in self.conns:
                ev = [e for e in c.events if e[0] == probe]
                if not ev:
                    continue
                rx = b"".join(d for _, k, d in ev if k == "rx")
                tx = b"".join(d for _, k, d in ev if k == "tx")
                reqs = [d for _, k, d in ev if k == "req"]
                errors = [d for _, k, d in ev if k == "error"]
                notes = [d for _, k, d in ev if k == "note"]
                eof = any(k == "eof" for _, k, _ in ev)
                tail = bytes(c.buf[c.pos:]) if c.done.is_set() and c.error is None else b""
                conns.append({"conn": c.id, "new_in_probe": c.opened_in == probe, "rx": rx, "tx": tx,
                              "reqs": reqs, "errors": errors, "notes": notes, "eof": eof,
                              "incomplete": tail})
        return conns

    def close(self):
        self.stop = True
        self.teardown(0.5)
        try:
            self.ls.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# The client


def client_exchange(port, data, expect):
    """Send `data` on a new connection; read until the expected number of final
    responses plus a quiet period, EOF, reset, or the 2 s timeout."""
    t0 = time.monotonic()
    res = {"sent": blob(data), "send_error": None}
    try:
        s = socket.create_connection((HOST, port), timeout=SOCK_TIMEOUT)
    except OSError as e:
        res.update(end="connect failed: %s" % e, raw=b"", responses=[], problem=None, leftover=b"")
        return res

    def sender():
        try:
            s.sendall(data)
        except OSError as e:
            res["send_error"] = str(e)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    buf, end = b"", None
    hard_deadline = t0 + 2 * SOCK_TIMEOUT + QUIET
    while True:
        resps, _, _ = parse_responses(buf, False)
        finals = [r for r in resps if r["code"] >= 200]
        enough = len(finals) >= expect
        remaining = hard_deadline - time.monotonic()
        if remaining <= 0:
            end = "open" if enough else "timeout"
            break
        s.settimeout(min(QUIET if enough else SOCK_TIMEOUT, remaining))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            end = "open" if enough else "timeout"
            break
        except ConnectionResetError:
            end = "reset"
            break
        except OSError as e:
            end = "error: %s" % e
            break
        if not chunk:
            end = "closed"
            break
        buf += chunk
    th.join(SOCK_TIMEOUT)
    try:
        s.close()
    except OSError:
        pass
    resps, leftover, problem = parse_responses(buf, end in ("closed", "reset"), final=True)
    res.update(end=end, raw=buf, responses=resps, leftover=leftover, problem=problem,
               elapsed_ms=round((time.monotonic() - t0) * 1000))
    return res


# --------------------------------------------------------------------------
# Probes

SMUG = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
assert len(SMUG) == 35


def post(headers, body):
    return b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def te_te(te_lines):
    body = b"0\r\n\r\n" + SMUG
    return post([b"Content-Length: %d" % len(body)] + te_lines, body)


def chunked_post(chunk_bytes):
    return post([b"Transfer-Encoding: chunked"], chunk_bytes)


# (id, description, bytes, expected final responses, forwarded headers to show, kind)
PROBES = [
    ("B1 conn-cl", "`Connection: content-length` + CL 35, body = `GET /smuggled`",
     post([b"Connection: content-length", b"Content-Length: 35"], SMUG), 1, ["cl"], "req"),
    ("dup-host", "`Host: a.test` + `Host: b.test`",
     b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 1, ["host"], "req"),
    ("cl-cl-same", "two `Content-Length: 5`",
     post([b"Content-Length: 5", b"Content-Length: 5"], b"hello"), 1, ["cl"], "req"),
    ("cl-cl-diff", "`Content-Length: 5` + `Content-Length: 40`, body `hello`+smuggled GET",
     post([b"Content-Length: 5", b"Content-Length: 40"], b"hello" + SMUG), 1, ["cl"], "req"),
    ("CL.TE", "CL 40 + `Transfer-Encoding: chunked`, `0\\r\\n\\r\\n` then smuggled GET",
     te_te([b"Transfer-Encoding: chunked"]), 1, ["cl", "te"], "req"),
    ("TE.CL", "`Transfer-Encoding: chunked` + CL 4, chunk 0x23 holds a GET",
     post([b"Content-Length: 4", b"Transfer-Encoding: chunked"], b"23\r\n" + SMUG + b"\r\n0\r\n\r\n"),
     1, ["cl", "te"], "req"),
    ("TE.TE chunked,identity", "CL 40 + `Transfer-Encoding: chunked, identity`",
     te_te([b"Transfer-Encoding: chunked, identity"]), 1, ["cl", "te"], "req"),
    ("TE.TE xchunked", "CL 40 + `Transfer-Encoding: xchunked`",
     te_te([b"Transfer-Encoding: xchunked"]), 1, ["cl", "te"], "req"),
    ("TE.TE leading space", "CL 40 + `Transfer-Encoding:  chunked` (extra space)",
     te_te([b"Transfer-Encoding:  chunked"]), 1, ["cl", "te"], "req"),
    ("TE.TE space-colon", "CL 40 + `Transfer-Encoding : chunked`",
     te_te([b"Transfer-Encoding : chunked"]), 1, ["cl", "te"], "req"),
    ("TE.TE chunked+identity", "CL 40 + `TE: chunked` and `TE: identity` lines",
     te_te([b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"]), 1, ["cl", "te"], "req"),
    ("CL +5", "`Content-Length: +5`", post([b"Content-Length: +5"], b"hello"), 1, ["cl"], "req"),
    ("CL 0x5", "`Content-Length: 0x5`", post([b"Content-Length: 0x5"], b"hello"), 1, ["cl"], "req"),
    ("CL '5, 5'", "`Content-Length: 5, 5`", post([b"Content-Length: 5, 5"], b"hello"), 1, ["cl"], "req"),
    ("CL -1", "`Content-Length: -1`", post([b"Content-Length: -1"], b"hello"), 1, ["cl"], "req"),
    ("NUL in value", "`X-A: a\\0b`",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 1, ["x-a"], "req"),
    ("bare LF", "every line ends in `\\n`",
     b"GET / HTTP/1.1\nHost: x\nX-A: b\n\n", 1, ["x-a"], "req"),
    ("obs-fold", "`X-A: a` continued by `\\r\\n b`",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 1, ["x-a"], "req"),
    ("bare CR in value", "`X-A: a\\rb`",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 1, ["x-a"], "req"),
    ("chunk '5 junk'", "chunk size line `5 junk`",
     chunked_post(b"5 junk\r\nhello\r\n0\r\n\r\n"), 1, ["cl", "te"], "req"),
    ("chunk FFFF..(18)", "chunk size `FFFFFFFFFFFFFFFFFF` (overflows 64 bits)",
     chunked_post(b"FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), 1, ["cl", "te"], "req"),
    ("chunk size bare LF", "`5\\nhello\\r\\n0\\r\\n\\r\\n`",
     chunked_post(b"5\nhello\r\n0\r\n\r\n"), 1, ["cl", "te"], "req"),
    ("chunk ext 20 KB", "`5;e=` + 20 KB of `a`",
     chunked_post(b"5;e=" + b"a" * 20480 + b"\r\nhello\r\n0\r\n\r\n"), 1, ["cl", "te"], "req"),
    ("header 100 KB", "one 100 KB header value",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 102400 + b"\r\n\r\n", 1, [], "req"),
    ("header 450 KB", "one 450 KB header value",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * 460800 + b"\r\n\r\n", 1, [], "req"),
    ("absolute-form", "`GET http://other.test/` + `Host: x`",
     b"GET http://other.test/ HTTP/1.1\r\nHost: x\r\n\r\n", 1, ["line", "host"], "req"),
    ("HTTP/1.0 keep-alive pipelined", "`GET /1 HTTP/1.0` + `Connection: keep-alive`, then `GET /2 HTTP/1.0`",
     b"GET /1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\nHost: x\r\n\r\n",
     2, ["line"], "req"),
    ("pipelined 2 GETs", "`GET /1` and `GET /2` in one write",
     b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", 2, [], "req"),
    ("Connection: host", "hop-by-hop list names Host",
     b"GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n", 1, ["host"], "req"),
    ("no Host", "HTTP/1.1 request without Host", b"GET / HTTP/1.1\r\n\r\n", 1, ["host"], "req"),
]

AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
# After a probe that carries a smuggled request, a second client ("the victim") sends this
# on a new connection: does it get its own response, or the smuggled request's?
VICTIM = b"GET /victim HTTP/1.1\r\nHost: x\r\n\r\n"
RESP_PROBES = [
    ("B2 resp conn-cl", "upstream: `Connection: content-length` + `Content-Length: 23`", b"conn-cl"),
    ("B3 resp conn-te", "upstream: `Connection: transfer-encoding` + chunked", b"conn-te"),
    ("resp CL+TE", "upstream: CL (covering a trailing `299 EVIL` response) + chunked", b"cl-te"),
    ("resp CL 5 + CL 45", "upstream: two different CLs, the longer covers `299 EVIL`", b"cl-cl"),
]
for pid, desc, name in RESP_PROBES:
    PROBES.append((pid, desc + "; client pipelines `GET /after`",
                   b"GET /resp/" + name + b" HTTP/1.1\r\nHost: x\r\n\r\n" + AFTER, 2, [], "resp"))


# --------------------------------------------------------------------------
# Summaries


def short_line(line, full):
    parts = line.split(b" ")
    s = line if full or len(parts) < 2 else b" ".join(parts[:2])
    return esc(s[:60], 80)


def fwd_flags(req):
    head = req["head"]
    f = []
    if b"\x00" in head:
        f.append("fwd NUL")
    if re.search(rb"\r(?!\n)", head):
        f.append("fwd bare CR")
    if re.search(rb"(?<!\r)\n", head):
        f.append("fwd bare LF")
    if re.search(rb"\n[ \t]", head):
        f.append("fwd obs-fold")
    names = [n.lower() for n in re.findall(rb"\n([^:\r\n]*):", head)]
    cl = sum(1 for n in names if n.strip() == b"content-length")
    te = sum(1 for n in names if n.strip() == b"transfer-encoding")
    if cl and te:
        f.append("fwd CL+TE")
    if cl > 1:
        f.append("fwd %d×CL" % cl)
    if sum(1 for n in names if n.strip() == b"host") > 1:
        f.append("fwd 2×Host")
    return f


def show_fields(req, show):
    out = []
    for key in show:
        if key == "line":
            continue
        name = {"cl": b"content-length", "te": b"transfer-encoding"}.get(key, key.encode())
        vs = [v for n, v in req["fields"] if n.strip().lower() == name]
        label = {"cl": "CL", "te": "TE", "host": "Host"}.get(key, key)
        if vs:
            out.append("%s: %s" % (label, ", ".join(esc(v[:40], 60) for v in vs)))
        elif key in ("host", "cl", "te"):
            out.append("no %s" % label)
    return out


def victim_note(victim):
    if victim is None:
        return ""
    finals = [r for r in victim["responses"] if r["code"] >= 200]
    if not finals:
        return "; victim: %s" % victim["end"]
    body = finals[0]["_body"]
    if body == b"GET /victim HTTP/1.1":
        return "; victim ✓"
    return "; **victim got %d `%s`** ✗" % (finals[0]["code"], esc(body[:40], 60))


def summarize(probe, client, up, victim=None):
    pid, _, _, expect, show, kind = probe
    finals = [r for r in client["responses"] if r["code"] >= 200]
    codes = [str(r["code"]) for r in finals]
    if kind == "resp":
        return summarize_resp(client, up, finals)
    if codes:
        c = "+".join(codes)
        unframed = [r for r in finals if r["framing"] == "UNFRAMED"]
        if unframed:
            c += " UNFRAMED (no CL/TE, connection left open)"
            if b"HTTP/1." in unframed[0]["_body"]:
                c += " ✗ next response inside its body"
        if len(finals) < expect or client["end"] in ("closed", "reset"):
            c += ", " + client["end"] if client["end"] not in ("open",) else ""
    else:
        c = client["end"]
    if client["problem"] and client["problem"] not in ("incomplete head",) and client["leftover"]:
        c += " [client: %s]" % client["problem"]
    reqs = [r for cn in up for r in cn["reqs"] if b"/victim" not in r["line"]]
    smug = [r for r in reqs if SMUGGLE_MARK in r["line"]]
    notes = []
    full = "line" in show
    for r in reqs:
        for n in show_fields(r, show) + fwd_flags(r):
            if n not in notes:
                notes.append(n)
    for cn in up:
        for e in cn["errors"]:
            notes.append("upstream 400: " + e[:40])
        if cn["incomplete"]:
            notes.append("upstream: %d B incomplete" % len(cn["incomplete"]))
        if cn["new_in_probe"] and not cn["rx"]:
            notes.append("upstream conn opened, 0 B sent")
    if smug:
        how = "as its own request" if len(finals) >= len(reqs) else "hidden"
        c += " + **SMUGGLED %s** (%s)" % (short_line(smug[0]["line"], False), how)
    lines = "; ".join(short_line(r["line"], full) for r in reqs if r not in smug)
    c += " (%d req%s%s%s)" % (len(reqs), ": " + lines if lines else "",
                             "; " + "; ".join(notes) if notes else "", victim_note(victim))
    return c


def summarize_resp(client, up, finals):
    if not finals:
        c = client["end"]
    else:
        first = finals[0]
        c = "%d %s" % (first["code"], first["framing"])
        if first["framing"] == "UNFRAMED":
            c += " (no CL/TE, connection left open)"
        if b"299 EVIL" in first["_body"]:
            c += " (EVIL in body)"
        if b"GET /after" in first["_body"]:
            c += " ✗ desync: the `/after` response is inside its body"
        if len(finals) > 1:
            second = finals[1]
            ok = second["_body"] == b"GET /after HTTP/1.1"
            c += " + %d %s" % (second["code"], "✓ in sync" if ok else "✗ desync")
            for extra in finals[2:]:
                c += " + %d ✗" % extra["code"]
        else:
            c += " + no 2nd response (%s)" % client["end"]
    if client["problem"] and client["leftover"]:
        c += " [client: %s]" % client["problem"]
    reqs = [r for cn in up for r in cn["reqs"]]
    c += " (%d req)" % len(reqs)
    return c


def jsonable_up(up):
    out = []
    for cn in up:
        out.append({
            "conn": cn["conn"], "new_in_probe": cn["new_in_probe"], "received": blob(cn["rx"]),
            "sent": blob(cn["tx"]), "eof_from_proxy": cn["eof"], "errors": cn["errors"],
            "notes": cn["notes"], "incomplete_tail": blob(cn["incomplete"]) if cn["incomplete"] else None,
            "requests": [{"request_line": esc(r["line"], 200), "framing": r["framing"],
                          "headers": [[esc(n, 100), esc(v, 200)] for n, v in r["fields"]],
                          "body": blob(r["body"])} for r in cn["reqs"]],
        })
    return out


def jsonable_client(c):
    d = {k: v for k, v in c.items() if k not in ("raw", "responses", "leftover")}
    d["received"] = blob(c["raw"])
    d["leftover"] = blob(c["leftover"]) if c["leftover"] else None
    d["responses"] = [{k: v for k, v in r.items() if k != "_body"} for r in c["responses"]]
    return d


# --------------------------------------------------------------------------
# Proxies


class Proxy:
    def __init__(self, name, rundir, upstream_port):
        self.name, self.rundir, self.up_port = name, rundir, upstream_port
        self.port = free_port()
        self.proc = None
        self.version = None
        os.makedirs(rundir, exist_ok=True)

    def start(self):
        self.log = open(os.path.join(self.rundir, "stdout.log"), "wb")
        cmd = self.command()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def children(self):
        """PIDs of the process's descendants (from /proc), so that they can be
        stopped by PID if the parent dies first."""
        kids, ppid = set(), {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read()
                    ppid[int(d)] = int(st.rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        frontier = {self.proc.pid}
        while frontier:
            nxt = {p for p, pp in ppid.items() if pp in frontier and p not in kids}
            kids |= nxt
            frontier = nxt
        return kids

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        kids = self.children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(2)
        for k in kids:
            deadline = time.monotonic() + 2
            while os.path.exists("/proc/%d" % k) and time.monotonic() < deadline:
                time.sleep(POLL)
            try:
                if os.path.exists("/proc/%d" % k):
                    os.kill(k, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()

    def wait_ready(self, deadline_s):
        """Poll: a GET through the proxy answered 200 by the upstream."""
        deadline = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return "exited with %s" % self.proc.returncode
            try:
                with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as s:
                    s.settimeout(SOCK_TIMEOUT)
                    s.sendall(b"GET /__ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        data += d
                    if data.startswith(b"HTTP/1.1 200") and data.endswith(b"GET /__ready HTTP/1.1"):
                        return None
                    last = data[:60]
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        return "not ready in %ss (last: %s)" % (deadline_s, last)

    def tail_log(self):
        try:
            with open(os.path.join(self.rundir, "stdout.log"), "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""


class Nginx(Proxy):
    def command(self):
        r = self.rundir
        os.makedirs(os.path.join(r, "tmp"), exist_ok=True)
        conf = f"""# Based on bench/candidates/nginx.conf.tmpl: one worker, upstream keep-alive,
# HTTP/1.1 to the upstream; no retries (so the upstream log shows each request once);
# the client's host ($host) forwarded as Host.
daemon off;
worker_processes 1;
pid {r}/nginx.pid;
error_log {r}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {r}/access.log;
    server_tokens off;
    client_body_temp_path {r}/tmp;
    proxy_temp_path {r}/tmp;
    fastcgi_temp_path {r}/tmp;
    uwsgi_temp_path {r}/tmp;
    scgi_temp_path {r}/tmp;
    upstream up {{
        server {HOST}:{self.up_port};
        keepalive 16;
    }}
    server {{
        listen {HOST}:{self.port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;     # not $proxy_host: show which host nginx believed
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
            proxy_next_upstream off;
        }}
    }}
}}
"""
        path = os.path.join(r, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        return ["nginx", "-e", os.path.join(r, "error.log"), "-c", path, "-p", r]


class Haproxy(Proxy):
    def command(self):
        r = self.rundir
        conf = f"""# Based on bench/candidates/haproxy.cfg.tmpl: one thread, keep-alive both sides,
# safe reuse; no health checks and no retries (so the upstream log shows each request once).
global
    nbthread 1
    pidfile {r}/haproxy.pid
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 5s
    timeout http-keep-alive 10s
    option http-keep-alive
    http-reuse safe
    retries 0
frontend fe
    bind {HOST}:{self.port}
    default_backend be
backend be
    server s1 {HOST}:{self.up_port}
"""
        path = os.path.join(r, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        self.version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        subprocess.run(["haproxy", "-c", "-q", "-f", path], check=True, timeout=20)
        return ["haproxy", "-db", "-f", path]


class Shoal(Proxy):
    def __init__(self, name, rundir, upstream_port, binary):
        super().__init__(name, rundir, upstream_port)
        # A private copy: the shared target dir may be rebuilt while the probes run.
        os.makedirs(rundir, exist_ok=True)
        self.binary = os.path.join(rundir, "shoal")
        shutil.copy2(binary, self.binary)

    def command(self):
        r = self.rundir
        admin = free_port()
        conf = f"""# One route to one static server; no health checks, retries or passive ejection
# (so the upstream log shows each request once and a probe cannot eject the upstream).
gateway:
  listen: {HOST}:{self.port}
  workers: 1
admin:
  listen: {HOST}:{admin}
services:
  up:
    health: false
    retry: false
    passive: false
    servers: [http://{HOST}:{self.up_port}]
routes:
  - match: PathPrefix(`/`)
    service: up
"""
        path = os.path.join(r, "stack.yaml")
        with open(path, "w") as f:
            f.write(conf)
        self.version = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                      timeout=20).stdout.strip()
        chk = subprocess.run([self.binary, "check", "-f", path], capture_output=True, text=True, timeout=20)
        if chk.returncode != 0:
            raise RuntimeError("shoal check failed: %s%s" % (chk.stdout, chk.stderr))
        return [self.binary, "up", "--quiet", "-f", path, "--state-dir", os.path.join(r, "state")]


# --------------------------------------------------------------------------
# Driver


def run_proxy(name, args, deadline):
    rundir = os.path.join(args.rundir, name)
    up = Upstream()
    if name == "shoal":
        p = Shoal(name, rundir, up.port, args.shoal_bin)
    elif name == "nginx":
        p = Nginx(name, rundir, up.port)
    else:
        p = Haproxy(name, rundir, up.port)
    results = {"proxy": name, "error": None, "probes": {}}
    try:
        p.start()
        results["version"] = p.version
        err = p.wait_ready(args.ready_timeout)
        if err:
            results["error"] = "%s: %s | %s" % (name, err, p.tail_log()[-400:])
            return results
        up.wait_quiet()
        up.teardown()
        for probe in PROBES:
            if args.only and not any(o.lower() in probe[0].lower() for o in args.only):
                continue
            if time.monotonic() > deadline:
                results["error"] = "run deadline reached"
                break
            pid = probe[0]
            up.begin(pid)
            client = client_exchange(p.port, probe[2], probe[3])
            victim = client_exchange(p.port, VICTIM, 1) if SMUG in probe[2] else None
            up.wait_quiet()
            up.teardown()
            rec = up.record(pid)
            alive = p.proc.poll() is None
            cell = summarize(probe, client, rec, victim)
            if not alive:
                cell += " — PROXY EXITED"
            results["probes"][pid] = {"cell": cell, "client": jsonable_client(client),
                                      "victim": jsonable_client(victim) if victim else None,
                                      "upstream": jsonable_up(rec), "proxy_alive": alive}
            print("  %-32s %s" % (pid, cell), file=sys.stderr)
            if not alive:
                results["error"] = "proxy exited during %s: %s" % (pid, p.tail_log()[-400:])
                break
    except Exception as e:  # report, never leave processes behind
        results["error"] = "%s: %r" % (name, e)
    finally:
        p.stop()
        up.close()
    return results


def markdown(all_results, names):
    titles = {"shoal": "shoal", "nginx": "nginx", "haproxy": "HAProxy"}
    out = ["| probe | " + " | ".join(titles[n] for n in names) + " |",
           "|---|" + "---|" * len(names)]
    for probe in PROBES:
        pid, desc = probe[0], probe[1]
        cells = []
        for n in names:
            r = all_results[n]
            pr = r["probes"].get(pid)
            cells.append(pr["cell"] if pr else ("not run" + (" (%s)" % r["error"][:60] if r["error"] else "")))
        if all(c.startswith("not run") for c in cells):
            continue
        cells = [c.replace("|", "\\|") for c in cells]
        out.append("| **%s**: %s | %s |" % (pid, desc.replace("|", "\\|"), " | ".join(cells)))
    notes = []
    for n in names:
        r = all_results[n]
        notes.append("- %s: %s%s" % (titles[n], r.get("version") or "?",
                                      ("; error: " + r["error"].replace("\n", " ")[:300]) if r["error"] else ""))
    return "\n".join(out) + "\n\n" + "\n".join(notes) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("proxies", nargs="*", default=["shoal", "nginx", "haproxy"],
                    choices=["shoal", "nginx", "haproxy"])
    ap.add_argument("--shoal-bin", default=os.environ.get("SHOAL_BIN"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--rundir", default=None)
    ap.add_argument("--only", action="append", help="run only probes whose id contains this (repeatable)")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    ap.add_argument("--deadline", type=float, default=600.0, help="whole-run budget, seconds")
    args = ap.parse_args()
    names = list(dict.fromkeys(args.proxies))

    def on_term(signum, frame):
        raise SystemExit("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    if "shoal" in names and not args.shoal_bin:
        root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        for cand in ("target/release/shoal", "target/debug/shoal"):
            if os.access(os.path.join(root, cand), os.X_OK):
                args.shoal_bin = os.path.join(root, cand)
                break
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.rundir = args.rundir or "/tmp/shoal-probes-%s-%d" % (stamp, os.getpid())
    deadline = time.monotonic() + args.deadline
    all_results = {}
    for n in names:
        print("== %s" % n, file=sys.stderr)
        if n == "shoal" and not (args.shoal_bin and os.access(args.shoal_bin, os.X_OK)):
            all_results[n] = {"proxy": n, "error": "no shoal binary (set SHOAL_BIN or cargo build -p shoal)",
                              "probes": {}}
            continue
        all_results[n] = run_proxy(n, args, deadline)
        if all_results[n]["error"]:
            print("  error: %s" % all_results[n]["error"], file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    md = markdown(all_results, names)
    with open(os.path.join(args.out, "probes.md"), "w") as f:
        f.write("# Framing probes, %s\n\n" % stamp + md)
    with open(os.path.join(args.out, "probes.json"), "w") as f:
        json.dump({"when": stamp, "shoal_bin": args.shoal_bin, "probes": [
            {"id": p[0], "description": p[1], "bytes": blob(p[2]),
             "bytes_b64": base64.b64encode(p[2]).decode() if len(p[2]) < 4096 else None,
             "expected_responses": p[3], "kind": p[5]} for p in PROBES],
            "results": all_results}, f, indent=1, ensure_ascii=False)
    print(md)
    print("wrote %s/probes.md and probes.json" % args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
