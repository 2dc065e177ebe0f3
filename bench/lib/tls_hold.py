#!/usr/bin/env python3
"""Open N TLS connections to HOST:PORT (loopback only), make one keep-alive HTTP/1.1 request
on each, print READY and hold them until stdin closes (at most 120 s). Used by tls.sh to
read a proxy's memory with N TLS connections open."""
import select, socket, ssl, sys, time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
assert host.startswith("127."), "loopback only"
assert n <= 5000
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
conns, failed = [], 0
for _ in range(n):
    try:
        s = ssl_sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=5), server_hostname="localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            body += s.recv(65536)
        conns.append(s)
    except OSError:
        failed += 1
print(f"READY {len(conns)} {failed}", flush=True)
select.select([sys.stdin], [], [], 120)
for s in conns:
    s.close()
