"""Socket options that only tune what the kernel does, set on a listener
and on a connection: each must succeed (h2o gives up its listener when
TCP_DEFER_ACCEPT fails, unbound its ports when IP_MTU_DISCOVER does). Prints "ok: <option>" or "FAIL: <option> <error>"
for each, then "done".

Usage: sockopt_hints.py ADDR PORT
"""
import socket
import sys

addr, port = sys.argv[1], int(sys.argv[2])
HINTS = [
    ("TCP_DEFER_ACCEPT", socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1),
    ("TCP_QUICKACK", socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1),
    ("SO_SNDBUF", socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20),
    ("SO_RCVBUF", socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20),
    # (Linux's IP_MTU_DISCOVER, 10: Python has no name for it.)
    ("IP_MTU_DISCOVER", socket.IPPROTO_IP, 10, 0),
]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
for name, level, opt, value in HINTS:
    try:
        listener.setsockopt(level, opt, value)
        print("ok:", name, flush=True)
    except OSError as e:
        print("FAIL:", name, e, flush=True)
listener.bind((addr, port))
listener.listen(1)
print("done", flush=True)
