"""A forked child using a socket, with a server to talk to.

  fork_connect.py serve ADDR PORT   accepts one connection and prints
                                    "got: <the line it read>"
  fork_connect.py fork ADDR PORT    forks; the child connects to the
                                    server and sends a line; the parent
                                    prints "child exit status: N"

Bounded: the server gives up after 20 s, and the parent kills a child that
has not ended after 15 s (it prints "child hung"), so a child that hangs in
fork's handlers cannot hang the run.
"""
import os
import signal
import socket
import sys
import time

from accept_one import accept_one

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "serve":
    srv, conn = accept_one(addr, port, 4)
    conn.settimeout(10)
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(100)
        if not chunk:
            break
        line += chunk
    print("got:", line.decode().strip(), flush=True)
    sys.exit(0)

pid = os.fork()
if pid == 0:
    c = socket.create_connection((addr, port), timeout=10)
    c.sendall(b"hello from the child\n")
    c.close()
    os._exit(0)
deadline = time.monotonic() + 15
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit status:", status, flush=True)
        break
    if time.monotonic() > deadline:
        print("child hung", flush=True)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit(1)
    time.sleep(0.05)
