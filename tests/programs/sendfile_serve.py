"""A server that sends a file with sendfile(2) in the ways programs do.

  sendfile_serve.py serve ADDR PORT FILE   accepts three connections, one
                                           per way below, sends FILE on
                                           each and closes it
  sendfile_serve.py client ADDR PORT FILE  connects three times, reads each
                                           answer to its end, compares it
                                           with FILE: "WAY whole", or what
                                           was wrong

Ways: "offsets" (Python's socket.sendfile on a blocking socket: calls with
an offset that moves by what each sent), "position" (no offset: two calls
that each send half, from the file's position, which must have moved by
exactly what was sent), "nonblocking" (a non-blocking socket: calls with
an offset, waiting in select while the socket is full). Bounded: every
wait has a timeout.
"""
import os
import select
import socket
import sys

WAYS = ["offsets", "position", "nonblocking"]
mode, addr, port, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
size = os.path.getsize(path)

if mode == "client":
    with open(path, "rb") as f:
        expected = f.read()
    for way in WAYS:
        s = socket.create_connection((addr, port), timeout=30)
        with s.makefile("rb") as answer:
            got = answer.read()
        s.close()
        if got == expected:
            print(way, "whole", flush=True)
        else:
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            print(way, f"wrong: {len(got)} of {len(expected)} bytes, first difference at {first}", flush=True)
    sys.exit(0)

srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(4)
srv.settimeout(30)
print("listening", flush=True)
for way in WAYS:
    conn, _ = srv.accept()
    conn.settimeout(None)
    with open(path, "rb") as f:
        if way == "offsets":
            conn.sendfile(f)
        elif way == "position":
            half = size // 2
            for want in (half, size - half):
                done = 0
                while done < want:
                    n = os.sendfile(conn.fileno(), f.fileno(), None, want - done)
                    if n == 0:
                        break
                    done += n
                print(way, "file position", f.tell(), flush=True)
        else:
            conn.setblocking(False)
            offset = 0
            while offset < size:
                try:
                    offset += os.sendfile(conn.fileno(), f.fileno(), offset, size - offset)
                except BlockingIOError:
                    if not select.select([], [conn], [], 10)[1]:
                        print(way, "socket never writable", flush=True)
                        break
            print(way, "file position", f.tell(), flush=True)
    conn.close()
print("served", flush=True)
