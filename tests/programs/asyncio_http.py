"""A minimal HTTP/1.x server on Python's asyncio (its epoll event loop),
for tests/ldp.rs: answers every request with 4096 bytes, keeps the
connection when the request asks for keep-alive, else closes it.

Usage: asyncio_http.py <port> <address>
Prints "listening" once it accepts connections.
"""
import asyncio
import sys

BODY = b"x" * 4096


def response(keep_alive):
    head = b"HTTP/1.1 200 OK\r\n"
    if keep_alive:
        head += b"Connection: Keep-Alive\r\n"
    return head + b"Content-Length: 4096\r\n\r\n" + BODY


async def serve(reader, writer):
    try:
        while True:
            request = b""
            while b"\r\n\r\n" not in request:
                data = await reader.read(4096)
                if not data:
                    writer.close()
                    return
                request += data
            keep_alive = b"keep-alive" in request.lower()
            writer.write(response(keep_alive))
            await writer.drain()
            if not keep_alive:
                writer.close()
                return
    except ConnectionError:
        pass


async def main():
    server = await asyncio.start_server(serve, sys.argv[2], int(sys.argv[1]))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
