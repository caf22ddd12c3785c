"""UDP echo: sends every datagram back to where it came from, COUNT times,
then exits. Prints "ready" once bound. Gives up after 30 s without one.

Usage: udp_echo.py ADDR PORT COUNT
"""
import socket
import sys

addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
s.settimeout(30)
print("ready", flush=True)
for _ in range(count):
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
    print("echoed", data, "to", peer, flush=True)
print("echoed all", count, flush=True)
