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
import net from 'node:net';
import tls from 'node:tls';
import { credentials, relay, relayArgs } from './relay-common.mjs';

const { role, listenPort, nextPort, dir } = relayArgs('tls-relay.mjs');

function relayBothWays(a, b) {
  relay(a, b);
  relay(b, a);
  const end = () => { a.destroy(); b.destroy(); };
  a.on('error', end).on('close', end);
  b.on('error', end).on('close', end);
}

const plain = process.env.RELAY_PLAIN === '1';
const creds = plain ? undefined : credentials(dir);
// The outer side's next hop is the encrypted one; the inner side accepts it and dials the backend in clear.
const dialNext = plain || role === 'inner'
  ? () => net.connect(nextPort, '127.0.0.1')
  : () => tls.connect({ ...creds, port: nextPort, host: '127.0.0.1', servername: 'localhost', minVersion: 'TLSv1.3' });
const onConnection = (incoming) => {
  incoming.setNoDelay(true);
  const next = dialNext();
  next.setNoDelay(true);
  relayBothWays(incoming, next);
};
const server = plain || role === 'outer'
  ? net.createServer(onConnection)
  : tls.createServer({ ...creds, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, onConnection);
server.listen(listenPort, '127.0.0.1', () => console.log(`${role} ${plain ? 'plain' : 'TLS'} relay on ${listenPort} -> ${nextPort}`));
process.on('SIGTERM', () => process.exit(0));
