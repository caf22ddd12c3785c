// A minimal HTTP server on Node.js (libuv's epoll loop), for
// tests/ldp.rs: answers every request with 4096 bytes (keep-alive as the
// client asks). Usage: node node_http.js <port> <address>
// Prints "listening" once it accepts connections.
const http = require('http');
const [port, address] = [Number(process.argv[2]), process.argv[3]];
const body = 'x'.repeat(4096);
http
  .createServer((req, res) => {
    res.writeHead(200, { 'Content-Length': body.length });
    res.end(body);
  })
  .listen(port, address, () => console.log('listening'));
