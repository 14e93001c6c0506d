// A bare relay that carries each request as an HTTP/2 request over one mutual-TLS session between
// two Node processes: the shape the tunnel would have if the gateway sent HTTP/2 requests to the
// connector instead of HTTP/1.1 inside CONNECT streams (no HTTP/1 parser at the gateway, no
// tunnel socket layer), with nothing else of Drawbridge (no pipeline, no pooling of buffers, no
// retry, no checks). Both ends run Node's HTTP/2 natively on the TLS socket, the cheapest way
// Node offers (the gateway cannot: two native ends froze under bulk transfers both ways, see
// bench/README.md "Tunnel bulk path"). Not tuned: a reference for what Node's HTTP/2 costs,
// not a floor.
//
//   node bench/h2-relay.mjs inner <listenPort> <backendPort> <dir>   # the connector's side
//   node bench/h2-relay.mjs outer <listenPort> <innerPort> <dir>     # the gateway's side
//
// Measured by bench/relay-alone.sh (RELAY=h2-relay).
import http from 'node:http';
import http2 from 'node:http2';
import { credentials, relay, relayArgs } from './relay-common.mjs';

const { role, listenPort, nextPort, dir } = relayArgs('h2-relay.mjs');
const creds = credentials(dir);
// windows as a channel's: a response's bytes are not held back by flow control (and the session
// may hold what 50 such streams have in flight; Node's default of 10 MB refused new streams)
const settings = { initialWindowSize: 8 << 20 };
const maxSessionMemory = 64;
const bodiless = (method) => method === 'GET' || method === 'HEAD';

if (role === 'inner') {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const server = http2.createSecureServer({ ...creds, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', settings, maxSessionMemory });
  server.on('session', (session) => session.setLocalWindowSize(32 << 20));
  server.on('stream', (stream, headers) => {
    const up = http.request({ host: '127.0.0.1', port: nextPort, method: headers[':method'], path: headers[':path'], headers: { host: headers[':authority'] ?? 'localhost' }, agent }, (res) => {
      const answer = { ':status': res.statusCode };
      if (res.headers['content-length'] !== undefined) answer['content-length'] = res.headers['content-length'];
      stream.respond(answer);
      relay(res, stream);
    });
    up.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    stream.on('error', () => up.destroy());
    if (bodiless(headers[':method'])) up.end();
    else relay(stream, up);
  });
  server.listen(listenPort, '127.0.0.1', () => console.log(`inner HTTP/2 relay on ${listenPort} -> ${nextPort}`));
} else {
  const session = http2.connect(`https://127.0.0.1:${nextPort}`, { ...creds, servername: 'localhost', minVersion: 'TLSv1.3', settings, maxSessionMemory });
  session.on('connect', () => session.setLocalWindowSize(32 << 20));
  session.on('error', (err) => { console.error(`session: ${err.message}`); process.exit(1); });
  http.createServer((req, res) => {
    const stream = session.request({ ':method': req.method, ':path': req.url, ':authority': req.headers.host ?? 'localhost' }, { endStream: bodiless(req.method) });
    stream.on('response', (headers) => {
      const answer = {};
      if (headers['content-length'] !== undefined) answer['content-length'] = headers['content-length'];
      res.writeHead(headers[':status'], answer);
      relay(stream, res);
    });
    stream.on('error', () => res.destroy());
    if (!bodiless(req.method)) relay(req, stream);
  }).listen(listenPort, '127.0.0.1', () => console.log(`outer HTTP/2 relay on ${listenPort} -> ${nextPort}`));
}
process.on('SIGTERM', () => process.exit(0));
