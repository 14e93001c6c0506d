// What the bench's bare relays (tls-relay.mjs, h2-relay.mjs) share: their command line, their
// certificate and the way they move bytes from one stream to another.
import { mkdirSync, readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { relay as gatewayRelay } from '../dist/src/gateway/relay.js';

/** One self-signed certificate both sides use, each trusting only it (mutual TLS, as a channel is). */
export function credentials(dir) {
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

/**
 * Bytes from one stream to the other by the gateway's own relay (src/gateway/relay.ts, built to
 * dist/ by `npm run bench`), with the room the gateway gives a client (256 KiB, CLIENT_ROOM) and
 * the writes of one event-loop turn gathered into one: a bare relay that moved bytes any other
 * way would measure that way, not the TLS hop (session 49's paused at every 16 KiB record).
 */
export const relay = (from, to) => gatewayRelay(from, to, { maxBuffered: 256 << 10, coalesce: true });

/** `<role> <listenPort> <nextPort> <dir>` from the command line, or the usage and exit 2 */
export function relayArgs(script) {
  const [role, listenPort, nextPort, dir] = process.argv.slice(2);
  if (!['inner', 'outer'].includes(role) || !listenPort || !nextPort || !dir) {
    console.error(`usage: ${script} inner|outer <listenPort> <nextPort> <dir>`);
    process.exit(2);
  }
  return { role, listenPort: Number(listenPort), nextPort: Number(nextPort), dir };
}
