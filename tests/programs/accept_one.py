"""The server side the test programs share: listen on ADDR PORT, print
"listening" (the tests wait for it), accept one connection within 20 s.
Imported by the programs next to it (their directory is on sys.path)."""
import socket


def accept_one(addr, port, backlog):
    """Returns (listener, connection)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(backlog)
    print("listening", flush=True)
    srv.settimeout(20)
    conn, _ = srv.accept()
    return srv, conn
