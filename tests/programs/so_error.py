"""Connects without blocking to <address> <port>, waits until the socket
is writable (at most 5 s) and prints what getsockopt(SO_ERROR) says, as
"SO_ERROR <number> <name>", for tests/ldp.rs.

Usage: so_error.py <address> <port>
"""
import errno
import select
import socket
import sys

address = (sys.argv[1], int(sys.argv[2]))
s = socket.socket()
s.setblocking(False)
try:
    s.connect(address)
except BlockingIOError:
    pass
select.select([], [s], [], 5)
e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
print("SO_ERROR", e, errno.errorcode.get(e, "-"), flush=True)
