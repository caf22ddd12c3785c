"""A beanstalkd client: puts N jobs (bodies of 1 to 3000 bytes), then
reserves and deletes each, checking every body; prints "ok N" at the end.
Its socket has a timeout, so CPython waits in poll() before each receive.

Usage: beanstalk_client.py ADDR PORT N
Bounded: every wait gives up after 10 s.
"""
import socket
import sys

addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((addr, port), timeout=10)
pending = b""


def line():
    global pending
    while b"\r\n" not in pending:
        part = s.recv(65536)
        if not part:
            sys.exit("the server closed the connection")
        pending += part
    text, pending = pending.split(b"\r\n", 1)
    return text.decode()


def body(size):
    global pending
    while len(pending) < size + 2:
        part = s.recv(65536)
        if not part:
            sys.exit("the server closed the connection")
        pending += part
    data, pending = pending[:size], pending[size + 2:]
    return data


def job(i):
    return b"job-%d-" % i + bytes(65 + (i + k) % 26 for k in range(i * 37 % 3000))


for i in range(n):
    data = job(i)
    s.sendall(b"put 0 0 60 %d\r\n%s\r\n" % (len(data), data))
    answer = line()
    if not answer.startswith("INSERTED"):
        sys.exit("put %d: %s" % (i, answer))
for i in range(n):
    s.sendall(b"reserve-with-timeout 5\r\n")
    answer = line()
    if not answer.startswith("RESERVED"):
        sys.exit("reserve %d: %s" % (i, answer))
    job_id, size = answer.split()[1:3]
    if body(int(size)) != job(i):
        sys.exit("job %d came back changed" % i)
    s.sendall(b"delete %s\r\n" % job_id.encode())
    answer = line()
    if answer != "DELETED":
        sys.exit("delete %d: %s" % (i, answer))
s.close()
print("ok", n, flush=True)
