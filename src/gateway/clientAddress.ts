/**
 * The client address the gateway believes: the TCP peer, unless the peer is
 * a trusted proxy, in which case the rightmost X-Forwarded-For entry that is
 * not itself a trusted proxy. Entries left of that are the client's word and
 * are never believed.
 */
import type { CidrSet } from '../config/net.js';
import { parseIp } from '../config/net.js';

export type ClientAddress = { ok: true; ip: string } | { ok: false; reason: string };

const UNPARSABLE_PEER: ClientAddress = Object.freeze({ ok: false, reason: 'unparsable peer address' });
const peers = new Map<string, ClientAddress>();

/** The peer alone, parsed once per distinct address (kept-alive clients repeat theirs on every request). */
function peerAddress(peer: string): ClientAddress {
  let known = peers.get(peer);
  if (!known) {
    const ip = parseIp(peer);
    known = ip ? Object.freeze({ ok: true, ip: ip.toString() }) : UNPARSABLE_PEER;
    if (peers.size >= 4096) peers.clear();
    peers.set(peer, known);
  }
  return known;
}

export function clientAddress(peer: string, xff: string | string[] | undefined, trusted: CidrSet): ClientAddress {
  if (trusted.size === 0 || !xff) return peerAddress(peer);
  const peerIp = parseIp(peer);
  if (!peerIp) return UNPARSABLE_PEER;
  if (!trusted.has(peerIp)) return peerAddress(peer);
  const entries = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  for (let i = entries.length - 1; i >= 0; i--) {
    const ip = parseIp(stripPort(entries[i]!.trim()));
    if (!ip) return { ok: false, reason: 'unparsable X-Forwarded-For entry from a trusted proxy' };
    if (!trusted.has(ip)) return { ok: true, ip: ip.toString() };
  }
  // Every hop was a trusted proxy: the leftmost is the closest thing to a client.
  const first = parseIp(stripPort(entries[0]!.trim()));
  return first ? { ok: true, ip: first.toString() } : { ok: false, reason: 'unparsable X-Forwarded-For' };
}

function stripPort(s: string): string {
  if (s.startsWith('[')) return s.slice(1, s.indexOf(']'));
  const colons = s.split(':').length - 1;
  return colons === 1 ? s.slice(0, s.indexOf(':')) : s;
}
