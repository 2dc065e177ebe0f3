"""A minimal AMQP 0-9-1 client, Python's standard library only: what the bookstore needs
from RabbitMQ and nothing more (pika does the same in 10,000 lines).

    conn = Connection("amqp://guest:guest@127.0.0.1:5673/%2f")
    conn.declare("orders")                       # a durable queue
    conn.publish("orders", b'{"order": 1}')      # persistent; returns once the broker confirms
    for tag, body in conn.consume("orders", prefetch=10):
        ...
        conn.ack(tag)

One channel per connection; publisher confirms on; no heartbeats (loopback). Errors raise
`AmqpError` (or `OSError` when the broker is gone): the caller reconnects.
"""
import socket
import struct
import urllib.parse

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"


class AmqpError(Exception):
    pass


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


class Connection:
    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlsplit(url)
        vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
        self.sock = socket.create_connection((u.hostname, u.port or 5672), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, 10, 10)  # connection.start
        auth = b"\x00" + (u.username or "guest").encode() + b"\x00" + (u.password or "guest").encode()
        self.method(0, 10, 11, longstr(b"") + shortstr("PLAIN") + longstr(auth) + shortstr("en_US"))
        args = self.expect(0, 10, 30)  # connection.tune
        channel_max, frame_max, _ = struct.unpack(">HIH", args[:8])
        self.frame_max = frame_max or 131072
        self.method(0, 10, 31, struct.pack(">HIH", channel_max or 1, self.frame_max, 0))
        self.method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")  # connection.open
        self.expect(0, 10, 41)
        self.method(1, 20, 10, shortstr(""))  # channel.open
        self.expect(1, 20, 11)
        self.sock.settimeout(None)
        self.confirming = False
        self.published = 0

    # Frames.
    def send(self, kind, channel, payload):
        self.sock.sendall(struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END)

    def method(self, channel, cls, meth, args=b""):
        self.send(FRAME_METHOD, channel, struct.pack(">HH", cls, meth) + args)

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AmqpError("the broker closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def frame(self):
        """The next frame other than a heartbeat, as (kind, channel, payload)."""
        while True:
            kind, channel, size = struct.unpack(">BHI", self.read(7))
            payload = self.read(size + 1)[:-1]
            if kind == FRAME_HEARTBEAT:
                continue
            if kind == FRAME_METHOD:
                cls, meth = struct.unpack(">HH", payload[:4])
                if (cls, meth) in ((10, 50), (20, 40)):  # connection.close, channel.close
                    code, = struct.unpack(">H", payload[4:6])
                    text = payload[7 : 7 + payload[6]].decode(errors="replace")
                    raise AmqpError(f"closed by the broker: {code} {text}")
            return kind, channel, payload

    def expect(self, channel, cls, meth):
        kind, ch, payload = self.frame()
        got = struct.unpack(">HH", payload[:4]) if kind == FRAME_METHOD else None
        if ch != channel or got != (cls, meth):
            raise AmqpError(f"expected method {cls}.{meth}, got frame {kind} {got}")
        return payload[4:]

    # What the bookstore uses.
    def declare(self, queue):
        """A durable queue (a no-op when it exists)."""
        self.method(1, 50, 10, b"\x00\x00" + shortstr(queue) + b"\x02" + struct.pack(">I", 0))
        self.expect(1, 50, 11)

    def publish(self, queue, body):
        """Publishes a persistent message to `queue` (the default exchange) and waits for
        the broker's confirm: once this returns, RabbitMQ has the message."""
        if not self.confirming:
            self.method(1, 85, 10, b"\x00")  # confirm.select
            self.expect(1, 85, 11)
            self.confirming = True
        self.method(1, 60, 40, b"\x00\x00" + shortstr("") + shortstr(queue) + b"\x00")
        # content header: class 60, weight 0, body size, flags: delivery-mode (persistent)
        self.send(FRAME_HEADER, 1, struct.pack(">HHQH", 60, 0, len(body), 0x1000) + b"\x02")
        step = self.frame_max - 8
        for i in range(0, len(body), step):
            self.send(FRAME_BODY, 1, body[i : i + step])
        self.published += 1
        args = self.expect(1, 60, 80)  # basic.ack from the broker
        tag, = struct.unpack(">Q", args[:8])
        if tag != self.published:
            raise AmqpError(f"confirm for {tag}, expected {self.published}")

    def consume(self, queue, prefetch=10):
        """Yields (delivery tag, body) for each message, for ever; `ack` each when done."""
        self.method(1, 60, 10, struct.pack(">IH", 0, prefetch) + b"\x00")  # basic.qos
        self.expect(1, 60, 11)
        self.method(1, 60, 20, b"\x00\x00" + shortstr(queue) + shortstr("") + b"\x00" + struct.pack(">I", 0))
        self.expect(1, 60, 21)
        while True:
            kind, _, payload = self.frame()
            if kind != FRAME_METHOD or payload[:4] != struct.pack(">HH", 60, 60):
                continue  # basic.deliver only
            args = payload[4:]
            args = args[1 + args[0] :]  # consumer tag
            tag, = struct.unpack(">Q", args[:8])
            kind, _, header = self.frame()
            size, = struct.unpack(">Q", header[4:12])
            body = b""
            while len(body) < size:
                body += self.frame()[2]
            yield tag, body

    def ack(self, tag):
        self.method(1, 60, 80, struct.pack(">Q", tag) + b"\x00")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
