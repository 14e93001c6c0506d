/**
 * Policy conditions, compiled once per config. Each answers match / no match,
 * or `unknown` when it needs something the request does not carry (no
 * identity on a passthrough app, a group list the provider cut short). The
 * engine treats `unknown` as a match: applying a policy only ever adds
 * restrictions (block, requirements), so assuming it applies fails closed.
 */
import { CidrSet, parseIp } from '../config/net.js';
import { lenientPath } from '../gateway/normalize.js';
import type { Identity } from '../pipeline/stage.js';
import { PathGlob } from './glob.js';
import { platformOf } from './platform.js';
import { TimeWindow } from './time.js';

export interface PolicyInput {
  readonly app: string;
  /** undefined on passthrough apps: nobody signed in */
  readonly identity?: Identity;
  /** the client address as the edge trusts it */
  readonly clientIp: string;
  readonly method: string;
  /** the normalized path that is forwarded */
  readonly path: string;
  readonly userAgent?: string;
  /** epoch milliseconds */
  readonly now: number;
}

export type Match = true | false | 'unknown';

export interface Condition {
  /** the key in `when:` (groups, locations, time...) */
  readonly name: string;
  /** the per-request call: no strings built here */
  test(input: PolicyInput): Match;
  /** what was seen, in words, for what-if and the audit trail (only called when needed) */
  describe(input: PolicyInput): string;
}

export interface ClaimTest {
  equals?: string | number | boolean;
  includes?: string;
  exists?: boolean;
}

export interface ConditionsSpec {
  users?: readonly string[];
  groups?: readonly string[];
  apps?: readonly string[];
  locations?: readonly string[];
  notLocations?: readonly string[];
  clientApps?: readonly string[];
  devicePlatforms?: readonly string[];
  methods?: readonly string[];
  paths?: readonly string[];
  time?: { days?: readonly string[]; hours?: string; timezone: string };
  claims?: Readonly<Record<string, ClaimTest>>;
}

const lower = (xs: readonly string[]) => new Set(xs.map((x) => x.toLowerCase()));
const list = (xs: Iterable<string>) => [...xs].join(', ');

/** Builds the conditions of one policy; throws (config rejected) on anything malformed. */
export function compileConditions(when: ConditionsSpec | undefined, locations: Readonly<Record<string, readonly string[]>>): Condition[] {
  if (!when) return [];
  const out: Condition[] = [];
  // Cheap, identity-free conditions first: the first one that does not match decides.
  if (when.apps) {
    const want = lower(when.apps);
    out.push({ name: 'apps', test: (i) => want.has(i.app.toLowerCase()), describe: (i) => `app ${i.app}` });
  }
  if (when.methods) {
    const want = new Set(when.methods.map((m) => m.toUpperCase()));
    // Apps answer HEAD with their GET handler (RFC 9110 9.3.2), side effects and headers included.
    if (want.has('GET')) want.add('HEAD');
    out.push({ name: 'methods', test: (i) => want.has(i.method.toUpperCase()), describe: (i) => `method ${i.method}` });
  }
  if (when.paths) {
    // Matched without letter case and with or without a trailing slash: Express's default routing
    // and IIS serve /REPORTS/export and /api/users/ from the handlers of /reports/export and
    // /api/users, which a rule on the exact spelling missed. IIS also drops trailing dots and
    // spaces from a segment (/reports./export, /reports%20/export), so those are tried without
    // them too. A policy only ever adds conditions to meet, so a wider match can refuse more,
    // never let more in.
    const globs = when.paths.map((p) => new PathGlob(p.toLowerCase()));
    const hitIn = (lower: string) => {
      const other = lower.length > 1 && lower.endsWith('/') ? lower.slice(0, -1) : `${lower}/`;
      return globs.find((g) => g.matches(lower) || g.matches(other));
    };
    const hitOf = (path: string) => {
      const lower = path.toLowerCase();
      const hit = hitIn(lower);
      if (hit) return hit;
      const lenient = lenientPath(lower);
      return lenient !== lower ? hitIn(lenient) : undefined;
    };
    out.push({
      name: 'paths',
      test: (i) => hitOf(i.path) !== undefined,
      describe: (i) => {
        const hit = hitOf(i.path);
        return hit ? `path ${i.path} matches ${hit.pattern}` : `path ${i.path} matches none of ${list(globs.map((g) => g.pattern))}`;
      },
    });
  }
  if (when.locations) out.push(locationCondition('locations', when.locations, locations, true));
  if (when.notLocations) out.push(locationCondition('notLocations', when.notLocations, locations, false));
  if (when.devicePlatforms) {
    const want = new Set(when.devicePlatforms);
    out.push({ name: 'devicePlatforms', test: (i) => want.has(platformOf(i.userAgent)), describe: (i) => `device platform ${platformOf(i.userAgent)}` });
  }
  if (when.time) {
    const w = new TimeWindow(when.time);
    out.push({ name: 'time', test: (i) => w.check(i.now).inside, describe: (i) => `local time ${w.check(i.now).detail}` });
  }
  if (when.clientApps) {
    const want = new Set(when.clientApps);
    const kind = (id: Identity) => (id.via === 'bearer' ? 'native' : 'browser');
    out.push({
      name: 'clientApps',
      test: (i) => (i.identity ? want.has(kind(i.identity)) : 'unknown'),
      describe: (i) => (i.identity ? `client app ${kind(i.identity)}` : 'no sign-in, so no client app'),
    });
  }
  if (when.users) {
    const want = lower(when.users);
    out.push({
      name: 'users',
      test: (i) => (i.identity ? want.has(i.identity.user.toLowerCase()) : 'unknown'),
      describe: (i) => (i.identity ? `user ${i.identity.user}` : 'no signed-in user'),
    });
  }
  if (when.groups) {
    const want = lower(when.groups);
    const hitOf = (id: Identity) => id.groups.find((g) => want.has(g.toLowerCase()));
    out.push({
      name: 'groups',
      test: (i) => {
        if (!i.identity) return 'unknown';
        if (hitOf(i.identity) !== undefined) return true;
        // An overage claim means the list is partial: the user may be in the group.
        return i.identity.groupsIncomplete ? 'unknown' : false;
      },
      describe: (i) => {
        if (!i.identity) return 'no signed-in user';
        const hit = hitOf(i.identity);
        if (hit !== undefined) return `member of ${hit}`;
        if (i.identity.groupsIncomplete) return 'group list incomplete (overage)';
        return i.identity.groups.length ? `groups ${list(i.identity.groups)}` : 'no groups';
      },
    });
  }
  if (when.claims) {
    for (const [claim, t] of Object.entries(when.claims)) out.push(claimCondition(claim, t));
  }
  return out;
}

function locationCondition(name: 'locations' | 'notLocations', names: readonly string[], locations: Readonly<Record<string, readonly string[]>>, inside: boolean): Condition {
  const sets = names.map((n) => {
    // own keys only: a policy naming `constructor` must not find Object.prototype's
    const ranges = Object.hasOwn(locations, n) ? locations[n] : undefined;
    if (!ranges) throw new Error(`unknown location ${JSON.stringify(n)}`);
    return { name: n, set: new CidrSet(ranges) };
  });
  // One parse per address, not one per location condition: the same request meets several.
  let lastText = '';
  let lastIp: ReturnType<typeof parseIp>;
  const ipOf = (text: string) => {
    if (text !== lastText) {
      lastIp = parseIp(text);
      lastText = text;
    }
    // The edge refuses unparsable addresses already; anything else evaluating here must not slip through.
    if (!lastIp) throw new Error(`client address ${JSON.stringify(text)} is not an IP address`);
    return lastIp;
  };
  const hitOf = (text: string) => {
    const ip = ipOf(text);
    for (const s of sets) if (s.set.has(ip)) return s.name;
    return undefined;
  };
  return {
    name,
    test: (i) => (hitOf(i.clientIp) !== undefined) === inside,
    describe: (i) => {
      const hit = hitOf(i.clientIp);
      const ip = ipOf(i.clientIp).toString();
      return hit !== undefined ? `client ${ip} in ${hit}` : `client ${ip} in none of ${list(names)}`;
    },
  };
}

function claimCondition(claim: string, t: ClaimTest): Condition {
  if (t.equals === undefined && t.includes === undefined && t.exists === undefined) throw new Error(`claim ${claim}: needs equals, includes or exists`);
  const ops: string[] = [];
  if (t.exists !== undefined) ops.push(t.exists ? 'exists' : 'is absent');
  if (t.equals !== undefined) ops.push(`equals ${JSON.stringify(t.equals)}`);
  if (t.includes !== undefined) ops.push(`includes ${JSON.stringify(t.includes)}`);
  const want = `claim ${claim} ${ops.join(' and ')}`;
  const valueOf = (id: Identity) => (Object.prototype.hasOwnProperty.call(id.claims, claim) ? id.claims[claim] : undefined);
  return {
    name: `claims.${claim}`,
    test: (i) => {
      if (!i.identity) return 'unknown';
      const v = valueOf(i.identity);
      let ok = true;
      if (t.exists !== undefined) ok &&= (v !== undefined && v !== null) === t.exists;
      if (t.equals !== undefined) ok &&= v === t.equals;
      if (t.includes !== undefined) {
        // arrays (amr, roles) or space-separated strings (scp)
        ok &&= Array.isArray(v) ? v.includes(t.includes) : typeof v === 'string' ? v.split(' ').includes(t.includes) : false;
      }
      return ok;
    },
    describe: (i) => {
      if (!i.identity) return `${want}: no signed-in user`;
      const v = valueOf(i.identity);
      return `${want}: ${v === undefined ? 'absent' : JSON.stringify(v)}`;
    },
  };
}
