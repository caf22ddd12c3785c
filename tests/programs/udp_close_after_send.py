"""A datagram sent just before its socket's close still goes out.

serve ADDR PORT COUNT: a UDP echo server that closes its socket right
after each answer and binds a new one for the next datagram; prints
"ready" once bound, "served COUNT" at the end.
ask ADDR PORT COUNT: sends COUNT datagrams one at a time, from a socket
bound to a free port, waiting up to 1 s for each answer; prints
"answered N of COUNT".

Usage: udp_close_after_send.py serve|ask ADDR PORT COUNT
"""
import socket
import sys
import time

role, addr, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def bound():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(30)
    return s


if role == "serve":
    s = bound()
    print("ready", flush=True)
    for _ in range(count):
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
        s.close()
        s = bound()
    s.close()
    print("served", count, flush=True)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    answered = 0
    for i in range(count):
        msg = b"datagram %d" % i
        s.sendto(msg, (addr, port))
        try:
            while s.recv(100) != msg:
                pass
            answered += 1
        except socket.timeout:
            pass
        # The server binds its next socket.
        time.sleep(0.05)
    print("answered", answered, "of", count, flush=True)
