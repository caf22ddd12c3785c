"""A forking server whose child ends at once, as one that fails right away.

serve ADDR PORT N HOW: accepts N connections one after the other; for each,
forks a child that ends at once (HOW: `_exit` with os._exit, `exit` with
sys.exit, which runs the exit handlers) without touching the connection;
the parent closes its copy and waits for the child. The connection then
has no holder left: the peer must see it closed.

client ADDR PORT N: connects N times; each time waits (2 s at most) for
the server's close; prints "hung K of N", K the connections left open.
"""
import os
import socket
import sys


def serve(addr, port, n, how):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(8)
    print("listening", flush=True)
    for _ in range(n):
        c, _ = ls.accept()
        pid = os.fork()
        if pid == 0:
            if how == "_exit":
                os._exit(2)
            sys.exit(2)
        c.close()
        os.waitpid(pid, 0)
    ls.close()


def client(addr, port, n):
    hung = 0
    for _ in range(n):
        s = socket.create_connection((addr, port), timeout=10)
        s.settimeout(2)
        try:
            s.recv(100)
        except socket.timeout:
            hung += 1
        except ConnectionResetError:
            pass
        s.close()
    print(f"hung {hung} of {n}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
