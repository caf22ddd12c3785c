"""Request and answer over one TCP connection, the client waiting in
poll() before each receive (a socket with a timeout: CPython polls first).

  poll_echo.py serve ADDR PORT       echoes one connection, then exits
                                     (prints "listening" first)
  poll_echo.py ask ADDR PORT N       sends N messages of 1 to 3000 bytes,
                                     one at a time, and checks each echo;
                                     prints "ok N" at the end

Answers longer than a TCP segment reach the client in two parts, the case
in which a poll under LDP could miss VPP's signal for the second part.
Bounded: every wait gives up after 10 s.
"""
import socket
import sys

from accept_one import accept_one

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    srv, conn = accept_one(addr, port, 1)
    conn.settimeout(10)
    while True:
        data = conn.recv(65536)
        if not data:
            break
        conn.sendall(data)
    conn.close()
else:
    n = int(sys.argv[4])
    s = socket.create_connection((addr, port), timeout=10)
    for i in range(n):
        size = 1 + (i * 97) % 3000
        msg = bytes((i + k) % 251 for k in range(size))
        s.sendall(msg)
        got = b""
        while len(got) < size:
            part = s.recv(65536)
            if not part:
                sys.exit("closed after %d of %d bytes of message %d" % (len(got), size, i))
            got += part
        if got != msg:
            sys.exit("message %d came back changed" % i)
    s.close()
    print("ok", n, flush=True)
