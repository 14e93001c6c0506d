/**
 * Request-target normalization. The path that access rules see must be the
 * exact path that is forwarded, so it is normalized once, here, and anything
 * that cannot be normalized without guessing what the app would make of it is
 * refused (400) instead of passed on.
 *
 * Path parameters (`;x`) are where servers disagree most: servlet containers
 * drop them from every segment before mapping (`/secure;x/data` is their
 * `/secure/data`), others take them literally. Rules checked on the literal
 * form could then miss the app or the path the servlet serves, so a parameter
 * on a directory segment is refused, and one on the last segment (the
 * `;jsessionid=` of URL rewriting) is set aside: routing and rules see the
 * path without it, and it is forwarded after the path.
 */
export type NormalizedTarget = { ok: true; path: string; params: string; search: string } | { ok: false; reason: string };

// Paths made only of these characters, with no '//' and no '/.', need no work.
const CLEAN_PATH = /^\/[A-Za-z0-9\-_~!$&'()*+,=:@/.]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /[A-Za-z0-9\-._~]/;
/** `%252f`, `%255c` (and `%25252f`...): a slash or backslash to whatever decodes the path again */
const DOUBLY_ENCODED_SLASH = /%25(?:25)*(?:2f|5c)/i;
const DOUBLY_ENCODED_DOT = /%25(?:25)*2e/gi;

export function normalizeTarget(target: string): NormalizedTarget {
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const search = q < 0 ? '' : target.slice(q);
  if (search.includes('#') || rawPath.includes('#')) return { ok: false, reason: 'fragment in request target' };
  if (rawPath.charCodeAt(0) !== 47 /* / */) return { ok: false, reason: 'request target is not an absolute path' };
  if (CLEAN_PATH.test(rawPath) && !rawPath.includes('//') && !rawPath.includes('/.')) return { ok: true, path: rawPath, params: '', search };

  // Decode what is safe to decode, remembering which segments held an encoded dot.
  const segments: { text: string; encodedDot: boolean }[] = [];
  let text = '';
  let encodedDot = false;
  for (let i = 1; i <= rawPath.length; i++) {
    const c = i < rawPath.length ? rawPath[i]! : '/';
    if (c === '/') {
      segments.push({ text, encodedDot });
      text = '';
      encodedDot = false;
      continue;
    }
    const code = c.charCodeAt(0);
    if (code < 0x21 || code === 0x7f) return { ok: false, reason: 'control character in path' };
    if (c === '\\') return { ok: false, reason: 'backslash in path' };
    if (c !== '%') {
      text += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return { ok: false, reason: 'malformed percent-encoding in path' };
    const ch = String.fromCharCode(parseInt(hex, 16));
    i += 2;
    if (ch === '/' || ch === '\\') return { ok: false, reason: 'encoded slash in path' };
    if (ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f) return { ok: false, reason: 'encoded control character in path' };
    if (UNRESERVED.test(ch)) {
      if (ch === '.') encodedDot = true;
      text += ch;
    } else {
      text += '%' + hex.toUpperCase();
    }
  }

  // The last pushed segment is the one after the final '/' ('' when the path ends with '/').
  const out: string[] = [];
  const last = segments.length - 1;
  let params = '';
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    // `..;x` is a dot segment to servers that drop path parameters first (Tomcat, Jetty):
    // forwarded as is, it would climb out of the prefix the rules were checked on.
    if (/^\.\.?;/.test(s.text)) return { ok: false, reason: 'dot segment with parameters in path' };
    const semi = s.text.indexOf(';');
    if (semi >= 0) {
      if (i !== last) return { ok: false, reason: 'parameters on a directory segment of the path' };
      params = s.text.slice(semi);
      s.text = s.text.slice(0, semi);
    }
    // An app (or a filter in front of it) that decodes once more reads `%252e%252e` as `..` and
    // `%252f` as `/`, climbing out of the prefix the rules were checked on.
    if (s.text.includes('%25')) {
      if (DOUBLY_ENCODED_SLASH.test(s.text)) return { ok: false, reason: 'doubly encoded slash in path' };
      const dots = s.text.replace(DOUBLY_ENCODED_DOT, '.');
      if (dots === '.' || dots === '..') return { ok: false, reason: 'doubly encoded dot segment in path' };
    }
    if (s.text === '.' || s.text === '..') {
      if (s.encodedDot) return { ok: false, reason: 'encoded dot segment in path' };
      if (s.text === '..') {
        if (out.length === 0) return { ok: false, reason: 'path escapes the root' };
        out.pop();
      }
      if (i === last) out.push('');
      continue;
    }
    if (s.text === '' && i !== last) continue; // duplicate slash
    out.push(s.text);
  }
  return { ok: true, path: '/' + out.join('/'), params, search };
}

/**
 * The form a path written in the config takes among normalized request paths:
 * characters a client must encode (non-ASCII, spaces) encoded as a browser
 * does, then normalized like a request. A config path that differs from its
 * form can never match a request, so the rule it carries would be skipped.
 * undefined: no request path has this form at all (an encoded slash, a
 * parameter on a segment).
 */
export function canonicalPath(p: string): string | undefined {
  const encoded = p.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
  const n = normalizeTarget(encoded.replace(/[?#]/g, encodeURIComponent));
  return n.ok && n.params === '' ? n.path : undefined;
}

/**
 * A path segment as servers that ignore letter case and drop trailing dots and spaces from names
 * (IIS, and anything that maps URLs to Windows file names) read it.
 */
export function segmentKey(segment: string): string {
  let s = segment.toLowerCase();
  for (;;) {
    if (s.endsWith('.') || s.endsWith(' ')) s = s.slice(0, -1);
    else if (s.endsWith('%20')) s = s.slice(0, -3);
    else return s;
  }
}

/** A normalized path as such a server reads it, segment by segment (policy paths are matched on it too). */
export function lenientPath(path: string): string {
  return path.split('/').map(segmentKey).join('/');
}

export type OriginForm = { ok: true; authority: string; target: string } | { ok: false; reason: string };

/**
 * An absolute-form target (`GET http://host/x?y`, sent by clients configured for a proxy),
 * split into its authority and the origin-form target the rest of the gateway reads. Servers
 * must accept this form (RFC 9112 3.2.2). Undefined for any other form; other schemes are left
 * to normalizeTarget, which refuses them.
 */
export function originForm(target: string): OriginForm | undefined {
  const m = /^https?:\/\/([^/?#]*)(.*)$/is.exec(target);
  if (!m) return undefined;
  const authority = m[1]!;
  const rest = m[2]!;
  // userinfo: a password in a request line is an error, never a name to route on (RFC 9110 4.2.4)
  if (authority.includes('@')) return { ok: false, reason: 'userinfo in the request target' };
  if (authority === '') return { ok: false, reason: 'no host in the request target' };
  return { ok: true, authority, target: rest === '' || rest.startsWith('?') ? `/${rest}` : rest };
}
