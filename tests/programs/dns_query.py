"""N DNS queries over UDP for a.vls.test (type A), each from a new socket
never bound (the kernel binds it at its first sendto); an answer counts
if it carries the query's id and ends with the address 10.1.2.3. Prints
"answered K of N". Bounded: 3 s per query.

Usage: dns_query.py ADDR PORT N
"""
import random
import socket
import struct
import sys

addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
NAME = b"\x01a\x03vls\x04test\x00"
answered = 0
for _ in range(n):
    query_id = random.randint(0, 65535)
    # Header: id, flags (recursion desired), one question; then the
    # question: the name, type A, class IN.
    query = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + NAME + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(query, (addr, port))
    try:
        data, _ = s.recvfrom(512)
        if data[:2] == query[:2] and data[-4:] == bytes([10, 1, 2, 3]):
            answered += 1
    except socket.timeout:
        pass
    s.close()
print("answered", answered, "of", n, flush=True)
