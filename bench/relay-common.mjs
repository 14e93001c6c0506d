// What the bench's bare relays (tls-relay.mjs, h2-relay.mjs) share: their certificate and the way
// they move bytes from one stream to another.
import { mkdirSync, readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

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

/** What may wait unwritten for a destination before its source is paused: the gateway's own bound (CLIENT_ROOM). */
const ROOM = 256 << 10;

/**
 * Bytes from one stream to the other, the writes of one event-loop turn gathered into one
 * (a TLS socket hands its reads on one 16 KiB record at a time: without the cork each would be
 * its own write syscall), the source paused only once more than ROOM waits, as the gateway's
 * relay does. Paused at the destination's own 16 KiB mark, the TLS side stopped after each
 * record and the relay wrote one record per turn: 70 writes per MiB where the gateway, relaying
 * the same bytes out of its channel, makes 6.
 */
export function relay(from, to) {
  let corked = false;
  const uncork = () => { corked = false; to.uncork(); };
  from.on('data', (chunk) => {
    if (!corked) { corked = true; to.cork(); setImmediate(uncork); }
    if (!to.write(chunk) && to.writableLength > ROOM && !from.isPaused()) { from.pause(); to.once('drain', () => from.resume()); }
  });
  from.on('end', () => to.end());
}
