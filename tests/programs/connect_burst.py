"""Bursts of closes and connects with no wait in between.

serve ADDR PORT TOTAL: accepts connections, reads each until its peer
closes, then closes it; ends after TOTAL connections have closed, or 5 s
after the last activity (refused connections never arrive).

client ADDR PORT ROUNDS K: each round opens K non-blocking connections
at once (no wait between the connects), then waits in select until every
one is writable, reads its SO_ERROR and closes all K at once, so the
next round's connects follow K closes at once. Prints
"refused R of N" (connections whose connect failed) and fails if any
was not writable within 20 s.
"""

import select
import socket
import sys
import time


def serve(addr, port, total):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((addr, port))
    lst.listen(1024)
    lst.setblocking(False)
    print("listening", flush=True)
    conns = []
    closed = 0
    last = time.monotonic() + 60
    while closed < total and time.monotonic() < last + 5:
        readable, _, _ = select.select([lst] + conns, [], [], 1.0)
        if readable:
            last = time.monotonic()
        for s in readable:
            if s is lst:
                while True:
                    try:
                        c, _ = lst.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    conns.append(c)
                continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                conns.remove(s)
                s.close()
                closed += 1
    print(f"closed {closed} of {total}", flush=True)


def client(addr, port, rounds, k):
    refused = 0
    for r in range(rounds):
        socks = []
        for _ in range(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((addr, port))
            socks.append(s)
        pending = list(socks)
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 1.0)
            for s in writable:
                pending.remove(s)
        if pending:
            print(f"round {r}: {len(pending)} of {k} never writable", flush=True)
            sys.exit(1)
        for s in socks:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                refused += 1
            s.close()
    print(f"refused {refused} of {rounds * k}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
