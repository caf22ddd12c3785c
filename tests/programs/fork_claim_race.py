"""A forking server whose handlers wait in epoll for data that the client
sends around the moment the connection is handed over to them.

  fork_claim_race.py serve ADDR PORT N   listens; accepts N connections,
                                         each served by a child of its own
                                         (the parent closes its copy at
                                         once): the child greets the
                                         client, tries a read, then waits
                                         in epoll for the line and echoes it
  fork_claim_race.py client ADDR PORT N  N connections one after the other;
                                         each reads the greeting, waits a
                                         little (0 to 0.4 ms, varying),
                                         sends its line, then waits at most
                                         3 s for the echo

As with a PostgreSQL backend and its client: the child answers, and the
client's next message comes while the child's first wait takes the
connection over from its parent (VPP's hand-over, requested when the parent
closed its copy, is answered there). The client prints "echoed" or
"stalled" per connection.
Bounded: every wait has a timeout.
"""
import os
import selectors
import socket
import sys
import time

mode, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

if mode == "client":
    for i in range(n):
        line = f"connection {i} says hello\n".encode()
        c = socket.create_connection((addr, port), timeout=10)
        greeting = b""
        while not greeting.endswith(b"\n"):
            chunk = c.recv(100)
            if not chunk:
                break
            greeting += chunk
        time.sleep((i % 5) * 0.0001)
        c.sendall(line)
        c.settimeout(3)
        got = b""
        try:
            while len(got) < len(line):
                chunk = c.recv(100)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
        c.close()
        print("echoed" if got == line else f"stalled {i} {got!r}", flush=True)
    sys.exit(0)


def serve_one(conn):
    conn.sendall(b"ready\n")
    conn.setblocking(False)
    line = b""
    try:
        line = conn.recv(100)
    except BlockingIOError:
        pass
    sel = selectors.DefaultSelector()
    sel.register(conn, selectors.EVENT_READ)
    deadline = time.monotonic() + 5
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if not sel.select(timeout=deadline - time.monotonic()):
            continue
        try:
            chunk = conn.recv(100)
        except BlockingIOError:
            continue
        if not chunk:
            break
        line += chunk
    conn.setblocking(True)
    conn.sendall(line)
    conn.close()


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(8)
print("listening", flush=True)
srv.settimeout(30)
for _ in range(n):
    conn, _ = srv.accept()
    pid = os.fork()
    if pid == 0:
        srv.close()
        serve_one(conn)
        os._exit(0)
    conn.close()
    # Reap the children that are done.
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
srv.close()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            time.sleep(0.05)
    except ChildProcessError:
        break
print("served", flush=True)
