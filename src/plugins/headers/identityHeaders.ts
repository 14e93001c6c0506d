/**
 * Header-based SSO (`headers.identity`): identity fields and claims become
 * request headers for the app.
 *
 * Field names: `user`, `groups`, or any claim name (email, name, oid, roles...).
 * Encoding, so an app can always tell what it got:
 * - a scalar is sent as text; an array is joined with "," (no spaces);
 * - when any element is outside printable ASCII, or contains "," or "%", or the
 *   value itself begins with `UTF-8''` (in any letter case), the
 *   whole value is sent RFC 8187-style as `UTF-8''` followed by each element
 *   percent-encoded (UTF-8), still joined with ",". Apps split on "," and
 *   percent-decode each part when the value starts with `UTF-8''`.
 * - an absent field sends no header at all (the client's copy is gone anyway).
 *
 * - when the gateway knows the groups are not all the user's (groupsKnownIncomplete), a mapped
 *   `groups` header still carries the groups it knows, and GROUPS_INCOMPLETE_HEADER comes with it.
 *
 * Strip before set: every configured name is declared in stripHeaders, with
 * its dashed spelling, so the edge drops client copies in any letter case and
 * in `_` / `.` spellings before this stage runs. Request trailers are never
 * forwarded by the upstream, so they cannot smuggle a copy either.
 */
import { PLUGIN_API_VERSION, type Decision, type Identity, type Plugin, type RequestContext, type Stage } from '../../pipeline/stage.js';

export interface IdentityHeadersOptions {
  /** header name -> identity field or claim */
  map: Record<string, string>;
}

const EXT_PREFIX = "UTF-8''";
// RFC 8187 attr-char, minus nothing: everything else is percent-encoded.
const ATTR_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/;

/**
 * Sent with the groups header, as `true`, when the list is known to be incomplete: the provider's
 * overage (`_claim_names.groups`, what Entra sends past 200 groups), or a session that kept only
 * the groups the config names because all of them would not fit in a cookie. Without it the app
 * read a cut-down or empty list as the user's whole list: an allow on another group refused, and a
 * deny ("no contractors") let through, while the gateway's own rules failed closed.
 *
 * Why a companion header and not leaving the groups header out: an app reads a missing groups
 * header as "no groups", the very reading that misled it (an overage already came as ""), and
 * it would lose the groups the gateway does know, each a real membership. Why one fixed name:
 * an app checks the same header whatever it calls its groups header, and every stage that can
 * send groups declares it in stripHeaders, so the client's copy is dropped on every app like the
 * identity headers'. Only the gateway can send it; absent, the list is whole.
 */
export const GROUPS_INCOMPLETE_HEADER = 'x-drawbridge-groups-incomplete';

/**
 * Whether identity.groups is known to be short of the user's groups: the provider said so
 * (groupsIncomplete), or the session kept only the groups the config names (groupsFiltered).
 */
export function groupsKnownIncomplete(id: Identity): boolean {
  return id.groupsIncomplete === true || id.claims.groupsFiltered === true;
}

export function valueOf(identity: Identity, field: string): unknown {
  if (field === 'user') return identity.user;
  if (field === 'groups') return identity.groups;
  return Object.prototype.hasOwnProperty.call(identity.claims, field) ? identity.claims[field] : undefined;
}

/** Encodes a field value for a header; undefined when there is nothing to send. */
export function encodeHeaderValue(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const parts = (Array.isArray(v) ? v : [v]).filter((x) => x !== undefined && x !== null).map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x)));
  if (Array.isArray(v) && parts.length === 0) return '';
  // HTTP drops the spaces at either end of a field value, and an app splitting a list on ',' trims
  // each element: sent plain, a user `root ` or a group ` admins` was read as `root` and `admins`
  // (and an empty element could not be told from none). Those go out percent-encoded.
  const plain = parts.every((p) => /^[\x20-\x7e]*$/.test(p) && !p.includes(',') && !p.includes('%') && p.trim() === p && (p !== '' || !Array.isArray(v)));
  // A value that already begins with the prefix, sent as it is, would be decoded by the app:
  // a user who names herself UTF-8''alice would be read as alice. RFC 8187 decoders take the
  // charset in any letter case, so the check does too.
  const joined = parts.join(',');
  if (plain && !joined.toUpperCase().startsWith(EXT_PREFIX)) return joined;
  return EXT_PREFIX + parts.map(percentEncode).join(',');
}

function percentEncode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += byte < 0x80 && ATTR_CHAR.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The inverse, for apps and tests. */
export function decodeHeaderValue(h: string): string[] {
  if (!h.toUpperCase().startsWith(EXT_PREFIX)) return h === '' ? [] : h.split(',');
  return h.slice(EXT_PREFIX.length).split(',').map((p) => decodeURIComponent(p));
}

/** Lower-case names to strip: the name as written and its dashed spelling. */
export function stripNamesFor(names: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const n of names) {
    out.add(n.toLowerCase());
    out.add(dashedName(n));
  }
  return [...out];
}

/** A header name as a CGI-style backend reads it: letter case, `_` and `.` do not tell names apart. */
export function dashedName(name: string): string {
  return name.toLowerCase().replace(/[_.]/g, '-');
}

/** nginx's default header line buffer (large_client_header_buffers 4 8k): an assertion over it is refused on its own. */
const LARGE_IDENTITY_BYTES = 8 * 1024;

/**
 * When the app answered 431 (request header fields too large): the bytes of the identity headers
 * and of the assertion this request carried (name, value and line ends), if they were over 8 KB
 * together; else undefined. A user with 200 GUID groups is sent about 7 KB of groups header and an
 * 11 KB assertion that repeats them, more than many servers take. The client is only shown the
 * app's 431, which blames its own request, and the request log says allow: the operator needs
 * these sizes to see that it is the user's groups, and the app's limit that should grow.
 */
export function largeIdentityHead(stages: readonly Stage[], sent: Readonly<Record<string, unknown>>): { identityHeaderBytes: number; assertionBytes: number } | undefined {
  const bytes = (stage: string) => {
    let n = 0;
    for (const s of stages) {
      if (s.name !== stage) continue;
      for (const name of s.stripHeaders ?? []) if (typeof sent[name] === 'string') n += name.length + Buffer.byteLength(sent[name] as string) + 4;
    }
    return n;
  };
  const identityHeaderBytes = bytes('identity-headers');
  const assertionBytes = bytes('identity-assertion');
  return identityHeaderBytes + assertionBytes > LARGE_IDENTITY_BYTES ? { identityHeaderBytes, assertionBytes } : undefined;
}

export const identityHeaders: Plugin<IdentityHeadersOptions> = {
  name: 'identity-headers',
  kind: 'headers',
  apiVersion: PLUGIN_API_VERSION,
  description: 'Header-based SSO: identity fields and claims as request headers.',
  optionsSchema: {
    type: 'object',
    properties: { map: { type: 'object', additionalProperties: { type: 'string', minLength: 1 } } },
    required: ['map'],
    additionalProperties: false,
  },
  create(options) {
    const entries = Object.entries(options.map).map(([header, field]) => {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(header)) throw new Error(`identity header ${JSON.stringify(header)} is not a valid header name`);
      return [header.toLowerCase(), field] as const;
    });
    const sendsGroups = entries.some(([, field]) => field === 'groups');
    return {
      name: 'identity-headers',
      kind: 'headers',
      stripHeaders: stripNamesFor([...Object.keys(options.map), GROUPS_INCOMPLETE_HEADER]),
      run(ctx: RequestContext): Decision {
        const id = ctx.identity;
        // No identity here means a pipeline without sign-in; the client's copies are already gone.
        if (!id) return { kind: 'continue' };
        const set: Record<string, string> = {};
        for (const [header, field] of entries) {
          const v = encodeHeaderValue(valueOf(id, field));
          if (v !== undefined) set[header] = v;
        }
        if (sendsGroups && groupsKnownIncomplete(id)) set[GROUPS_INCOMPLETE_HEADER] = 'true';
        return { kind: 'continue', setHeaders: set };
      },
    };
  },
};
