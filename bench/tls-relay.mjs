// The reference under the connector row: what two Node processes cost to relay bytes through one
// mutual-TLS hop, with nothing of Drawbridge in between (no HTTP parsing, no HTTP/2, no
// pipeline). It answers one question: how close to the gateway's direct mode does a bare relay
// get that encrypts between two Node processes on this machine, and so how much of the tunnel's
// cost is the TLS hop and how much its own layers? It is the "tls-relay" row of
// `npm run bench` (bench/targets/94-tls-relay.sh), measured in the same rounds as the gateway
// in direct mode and through its connector.
//
//   node bench/tls-relay.mjs inner <listenPort> <backendPort> <dir>   # the connector's side
//   node bench/tls-relay.mjs outer <listenPort> <innerPort> <dir>     # the gateway's side
//   RELAY_PLAIN=1 ...                                                        # the same hop without TLS
//
// The outer side accepts plain TCP (as the gateway's http listener does) and gives each client
// connection its own TLS connection to the inner side, which gives it its own TCP connection to
// the backend. Bytes are piped both ways. With wrk's kept-alive connections the handshakes
// happen once, so what is measured is the bulk path: TLS encryption and decryption, and the
// socket reads and writes of three hops where direct mode has two.
import { mkdirSync, readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { execFileSync } from 'node:child_process';

const [role, listenPort, nextPort, dir] = process.argv.slice(2);
if (!['inner', 'outer'].includes(role) || !listenPort || !nextPort || !dir) {
  console.error('usage: tls-relay.mjs inner|outer <listenPort> <nextPort> <dir>');
  process.exit(2);
}

/** One self-signed certificate both sides use, each trusting only it (mutual TLS, as a channel is). */
function credentials() {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  if (!existsSync(cert)) {
    // written aside and renamed: the other side may look for it while openssl writes
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', `${cert}.tmp`, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
    renameSync(`${cert}.tmp`, cert);
  }
  return { key: readFileSync(key), cert: readFileSync(cert), ca: readFileSync(cert) };
}

/** What may wait unwritten for a destination before its source is paused: the gateway's own bound (CLIENT_ROOM). */
const ROOM = 256 << 10;

/**
 * Bytes from one socket to the other, the writes of one event-loop turn gathered into one
 * (a TLS socket hands its reads on one 16 KiB record at a time: without the cork each would be
 * its own write syscall), the source paused only once more than ROOM waits, as the gateway's
 * relay does. Paused at the destination's own 16 KiB mark, the TLS side stopped after each
 * record and the relay wrote one record per turn: 70 writes per MiB where the gateway, relaying
 * the same bytes out of its channel, makes 6.
 */
function pump(from, to) {
  let corked = false;
  const uncork = () => { corked = false; to.uncork(); };
  from.on('data', (chunk) => {
    if (!corked) { corked = true; to.cork(); setImmediate(uncork); }
    if (!to.write(chunk) && to.writableLength > ROOM && !from.isPaused()) { from.pause(); to.once('drain', () => from.resume()); }
  });
  from.on('end', () => to.end());
}

function relay(a, b) {
  pump(a, b);
  pump(b, a);
  const end = () => { a.destroy(); b.destroy(); };
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}

const plain = process.env.RELAY_PLAIN === '1';
const creds = plain ? undefined : credentials();
// The outer side's next hop is the encrypted one; the inner side accepts it and dials the backend in clear.
const dialNext = plain || role === 'inner'
  ? () => net.connect(Number(nextPort), '127.0.0.1')
  : () => tls.connect({ ...creds, port: Number(nextPort), host: '127.0.0.1', servername: 'localhost', minVersion: 'TLSv1.3' });
const onConnection = (incoming) => {
  incoming.setNoDelay(true);
  const next = dialNext();
  next.setNoDelay(true);
  relay(incoming, next);
};
const server = plain || role === 'outer'
  ? net.createServer(onConnection)
  : tls.createServer({ ...creds, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, onConnection);
server.listen(Number(listenPort), '127.0.0.1', () => console.log(`${role} ${plain ? 'plain' : 'TLS'} relay on ${listenPort} -> ${nextPort}`));
process.on('SIGTERM', () => process.exit(0));
