"""Closing descriptors one by one under LDP, as dropbear's session child does.

serve ADDR PORT: first closes standard input, which must close, then
every number from 3 to 31 one by one, as
proftpd does at start-up (VCL's descriptors among them: its socket to VPP,
without which VPP detaches the application), any error but EBADF being
fatal. Then, in the process itself, closes a kernel descriptor
numbered 40 (a pipe's, given that number with dup2), which LDP takes for a
VPP session's number, and a number nothing has (45); both must answer as
the kernel would (closed; EBADF). Then accepts one connection and forks a
child that closes every number from 3 to the connection's plus 8, one by
one (VCL's own descriptors and VPP sessions among them), treating EBADF
as "was not open" and any other error as fatal (dropbear exits on one),
and execs `sh -c 'exit 7'`. The parent sends "child N\\n" (the child's
exit status) on the connection and closes it.

client ADDR PORT: connects and prints what it reads until the end.
"""
import errno
import os
import socket
import sys


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def close_one_by_one(first, last):
    """Closes first..=last; the errors other than EBADF, as (fd, text)."""
    bad = []
    for fd in range(first, last + 1):
        try:
            os.close(fd)
        except OSError as e:
            if e.errno != errno.EBADF:
                bad.append((fd, e.strerror))
    return bad


def expect_ebadf(what, call):
    """Ends the program unless call() fails with EBADF."""
    try:
        call()
        print(f"{what} succeeded", flush=True)
        sys.exit(1)
    except OSError as e:
        if e.errno != errno.EBADF:
            print(f"{what}: {e} (EBADF expected)", flush=True)
            sys.exit(1)


def serve(addr, port):
    # Standard input is the program's to close, whatever VCL holds.
    os.close(0)
    expect_ebadf("fstat(0) after close(0)", lambda: os.fstat(0))
    bad = close_one_by_one(3, 31)
    if bad:
        print(f"close errors at start: {bad}", flush=True)
        sys.exit(1)
    r, w = os.pipe()
    os.dup2(r, 40)
    os.close(r)
    assert "40" in open_fds()
    try:
        os.close(40)
    except OSError as e:
        print(f"close(40), a kernel descriptor: {e}", flush=True)
        sys.exit(1)
    if "40" in open_fds():
        print("close(40) left the kernel descriptor open", flush=True)
        sys.exit(1)
    expect_ebadf("close(45), nothing open", lambda: os.close(45))
    print("kernel closes: ok", flush=True)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(4)
    print("listening", flush=True)
    c, _ = ls.accept()
    pid = os.fork()
    if pid == 0:
        bad = close_one_by_one(3, c.fileno() + 8)
        if bad:
            os.write(2, f"child: close errors {bad}\n".encode())
            os._exit(1)
        os.execv("/bin/sh", ["sh", "-c", "exit 7"])
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(f"child exit status: {code}", flush=True)
    c.sendall(f"child {code}\n".encode())
    c.close()
    ls.close()


def client(addr, port):
    s = socket.create_connection((addr, port), timeout=30)
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    print(data.decode().strip(), flush=True)


if __name__ == "__main__":
    {"serve": serve, "client": client}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
