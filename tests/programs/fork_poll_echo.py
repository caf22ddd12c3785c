"""A forked child echoing, while it waits in poll, a connection its parent
handed over to it.

  fork_poll_echo.py serve ADDR PORT    accepts one connection, forks; the
                                       child echoes it, waiting in poll
                                       (5 s at most); the parent closes its
                                       copy at once
  fork_poll_echo.py client ADDR PORT   50 messages 10 ms apart, each echoed
                                       before the next; prints
                                       "slow N of 50" (echoes of 50 ms or more)
"""
import os
import select
import socket
import sys
import time

from accept_one import accept_one

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    srv, conn = accept_one(addr, port, 4)
    pid = os.fork()
    if pid == 0:
        srv.close()
        p = select.poll()
        p.register(conn.fileno(), select.POLLIN)
        while p.poll(5000):
            data = conn.recv(4096)
            if not data:
                break
            conn.sendall(data)
        os._exit(0)
    conn.close()
    _, status = os.waitpid(pid, 0)
    print("child exit status:", status, flush=True)
    sys.exit(0)

c = socket.create_connection((addr, port), timeout=10)
slow = 0
for i in range(50):
    time.sleep(0.01)
    msg = b"%03d" % i * 30
    start = time.monotonic()
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = c.recv(4096)
        if not chunk:
            sys.exit("connection closed after %d echoes" % i)
        got += chunk
    if got != msg:
        sys.exit("wrong echo %d" % i)
    if time.monotonic() - start >= 0.05:
        slow += 1
c.close()
print("slow %d of 50" % slow, flush=True)
