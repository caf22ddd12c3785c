"""HTTP/1.0 GETs of one file, C at a time, N in all; each answer is read to
the end of the stream (the server's close) and its body compared with the
file's bytes.

  http_get.py ADDR PORT PATH N C EXPECTED_FILE

Prints one line per request: "whole", or what was wrong. Bounded: every
socket call has a 20 s timeout.
"""
import socket
import sys
import threading

addr, port, path, n, c, expected_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
with open(expected_file, "rb") as f:
    expected = f.read()
lock = threading.Lock()
todo = list(range(n))


def one():
    s = socket.create_connection((addr, port), timeout=20)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
    got = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    if body == expected:
        return "whole"
    return f"wrong: {head[:40]!r}, {len(body)} of {len(expected)} bytes"


def worker():
    while True:
        with lock:
            if not todo:
                return
            todo.pop()
        try:
            result = one()
        except OSError as e:
            result = f"failed: {e}"
        with lock:
            print(result, flush=True)


threads = [threading.Thread(target=worker) for _ in range(c)]
for t in threads:
    t.start()
for t in threads:
    t.join()
