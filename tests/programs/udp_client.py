"""UDP client calls as programs make them, against udp_echo.py at ADDR PORT,
each printing one "ok: ..." or "FAIL: ..." line:

- getpeername of a socket never connected fails with ENOTCONN;
- sendto on a socket never bound (the kernel binds it to a free port);
- connect of a non-blocking socket succeeds at once (no EINPROGRESS),
  then send and recv.

Usage: udp_client.py ADDR PORT
"""
import errno
import socket
import sys

addr, port = sys.argv[1], int(sys.argv[2])


def check(what, f):
    try:
        print("ok:", what, f(), flush=True)
    except Exception as e:  # a failed check is reported, the rest still run
        print("FAIL:", what, repr(e), flush=True)


def never_connected():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer = s.getpeername()
        raise AssertionError("getpeername answered %r" % (peer,))
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            raise
        return "ENOTCONN"
    finally:
        s.close()


def sendto_unbound():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"unbound", (addr, port))
    data, peer = s.recvfrom(100)
    s.close()
    assert data == b"unbound", data
    return peer


def connect_nonblocking():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect((addr, port))
    peer = s.getpeername()
    s.settimeout(5)
    s.send(b"nonblocking")
    data = s.recv(100)
    s.close()
    assert data == b"nonblocking", data
    return peer


check("getpeername of a socket never connected", never_connected)
check("sendto on a socket never bound", sendto_unbound)
check("connect of a non-blocking socket", connect_nonblocking)
