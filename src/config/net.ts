import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

export type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * Parses an address, treating IPv4-mapped IPv6 (::ffff:1.2.3.4) as the IPv4
 * address it is: Node reports dual-stack peers that way, and rules written for
 * IPv4 ranges must still match them.
 */
export function parseIp(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!text) return undefined;
  let t = text;
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const zone = t.indexOf('%');
  if (zone >= 0) t = t.slice(0, zone);
  // Only the standard forms (Node's own test): ipaddr.js also takes `010.0.0.1` as octal (8.0.0.1),
  // `0x0a.1` and bare numbers, so a zero-padded range in a config would silently name another network.
  if (isIP(t) === 0) return undefined;
  const addr = ipaddr.parse(t);
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) return (addr as ipaddr.IPv6).toIPv4Address();
  return addr;
}

/** Strict CIDR parse: "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    if (!text.includes('/')) {
      const a = parseIp(text);
      return a ? [a, a.kind() === 'ipv4' ? 32 : 128] : undefined;
    }
    const slash = text.indexOf('/');
    if (isIP(text.slice(0, slash)) === 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) return undefined;
    const [addr, bits] = ipaddr.parseCIDR(text);
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
      return [(addr as ipaddr.IPv6).toIPv4Address(), bits - 96];
    }
    return [addr, bits];
  } catch {
    return undefined;
  }
}

/** A set of CIDR ranges, checked at build time; `has` is the per-request call. */
export class CidrSet {
  private readonly v4: Cidr[] = [];
  private readonly v6: Cidr[] = [];
  constructor(ranges: readonly string[]) {
    for (const r of ranges) {
      const c = parseCidr(r);
      if (!c) throw new Error(`invalid CIDR ${JSON.stringify(r)}`);
      (c[0].kind() === 'ipv4' ? this.v4 : this.v6).push(c);
    }
  }
  get size(): number {
    return this.v4.length + this.v6.length;
  }
  has(ip: string | ipaddr.IPv4 | ipaddr.IPv6 | undefined): boolean {
    const addr = typeof ip === 'string' ? parseIp(ip) : ip;
    if (!addr) return false;
    const list = addr.kind() === 'ipv4' ? this.v4 : this.v6;
    for (const c of list) if ((addr as ipaddr.IPv4).match(c as [ipaddr.IPv4, number])) return true;
    return false;
  }
}
