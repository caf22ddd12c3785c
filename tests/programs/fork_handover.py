"""A forking server whose connection handlers get a VCL worker index that
differs from their VPP worker index.

  fork_handover.py serve ADDR PORT N   listens, then forks two idle
                                       children and lets the second exit
                                       first; then accepts N connections,
                                       each echoed by a child of its own
                                       (the parent closes its copy at once)
  fork_handover.py client ADDR PORT N  N connections one after the other,
                                       each sends a line and checks the echo

VPP frees the idle children's app workers in the order they exit (the
second first); the layer frees their VCL workers in index order (the first
first). Both hand out the index freed last, so the next child gets VCL
worker 2 and VPP worker 1. Bounded: every wait has a timeout.
"""
import os
import socket
import sys
import time

mode, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

if mode == "client":
    for i in range(n):
        line = f"connection {i} says hello\n".encode()
        c = socket.create_connection((addr, port), timeout=10)
        c.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = c.recv(100)
            if not chunk:
                break
            got += chunk
        c.close()
        print("echoed" if got == line else f"wrong echo {got!r}", flush=True)
    sys.exit(0)


def idle_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    return pid, w


def end(child):
    pid, w = child
    os.close(w)
    os.waitpid(pid, 0)
    # Time for VPP to free its app worker.
    time.sleep(0.5)


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(8)
first, second = idle_child(), idle_child()
end(second)
end(first)
print("listening", flush=True)
srv.settimeout(30)
handlers = []
for _ in range(n):
    conn, _ = srv.accept()
    pid = os.fork()
    if pid == 0:
        srv.close()
        conn.settimeout(10)
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(100)
            if not chunk:
                break
            line += chunk
        conn.sendall(line)
        conn.close()
        os._exit(0)
    conn.close()
    handlers.append(pid)
for pid in handlers:
    _, status = os.waitpid(pid, 0)
    print("handler exit status:", status, flush=True)
