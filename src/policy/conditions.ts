/**
 * Policy conditions, compiled once per config. Each answers match / no match,
 * or `unknown` when it needs something the request does not carry (no
 * identity on a passthrough app, a group list the provider cut short). The
 * engine treats `unknown` as a match: applying a policy only ever adds
 * restrictions (block, requirements), so assuming it applies fails closed.
 */
import { CidrSet, parseIp } from '../config/net.js';
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

export interface Verdict {
  readonly match: Match;
  /** what was seen, for what-if and the audit trail */
  readonly detail: string;
}

export interface Condition {
  /** the key in `when:` (groups, locations, time...) */
  readonly name: string;
  test(input: PolicyInput): Verdict;
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
    out.push({ name: 'apps', test: (i) => ({ match: want.has(i.app.toLowerCase()), detail: `app ${i.app}` }) });
  }
  if (when.methods) {
    const want = new Set(when.methods.map((m) => m.toUpperCase()));
    out.push({ name: 'methods', test: (i) => ({ match: want.has(i.method.toUpperCase()), detail: `method ${i.method}` }) });
  }
  if (when.paths) {
    const globs = when.paths.map((p) => new PathGlob(p));
    out.push({
      name: 'paths',
      test: (i) => {
        const hit = globs.find((g) => g.matches(i.path));
        return { match: !!hit, detail: hit ? `path ${i.path} matches ${hit.pattern}` : `path ${i.path} matches none of ${list(globs.map((g) => g.pattern))}` };
      },
    });
  }
  if (when.locations) out.push(locationCondition('locations', when.locations, locations, true));
  if (when.notLocations) out.push(locationCondition('notLocations', when.notLocations, locations, false));
  if (when.devicePlatforms) {
    const want = new Set(when.devicePlatforms);
    out.push({
      name: 'devicePlatforms',
      test: (i) => {
        const p = platformOf(i.userAgent);
        return { match: want.has(p), detail: `device platform ${p}` };
      },
    });
  }
  if (when.time) {
    const w = new TimeWindow(when.time);
    out.push({
      name: 'time',
      test: (i) => {
        const r = w.check(i.now);
        return { match: r.inside, detail: `local time ${r.detail}` };
      },
    });
  }
  if (when.clientApps) {
    const want = new Set(when.clientApps);
    out.push({
      name: 'clientApps',
      test: (i) => {
        if (!i.identity) return { match: 'unknown', detail: 'no sign-in, so no client app' };
        const kind = i.identity.via === 'bearer' ? 'native' : 'browser';
        return { match: want.has(kind), detail: `client app ${kind}` };
      },
    });
  }
  if (when.users) {
    const want = lower(when.users);
    out.push({
      name: 'users',
      test: (i) => (i.identity ? { match: want.has(i.identity.user.toLowerCase()), detail: `user ${i.identity.user}` } : { match: 'unknown', detail: 'no signed-in user' }),
    });
  }
  if (when.groups) {
    const want = lower(when.groups);
    out.push({
      name: 'groups',
      test: (i) => {
        if (!i.identity) return { match: 'unknown', detail: 'no signed-in user' };
        const hit = i.identity.groups.find((g) => want.has(g.toLowerCase()));
        if (hit) return { match: true, detail: `member of ${hit}` };
        // An overage claim means the list is partial: the user may be in the group.
        if (i.identity.groupsIncomplete) return { match: 'unknown', detail: 'group list incomplete (overage)' };
        return { match: false, detail: i.identity.groups.length ? `groups ${list(i.identity.groups)}` : 'no groups' };
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
    const ranges = locations[n];
    if (!ranges) throw new Error(`unknown location ${JSON.stringify(n)}`);
    return { name: n, set: new CidrSet(ranges) };
  });
  return {
    name,
    test: (i) => {
      const ip = parseIp(i.clientIp);
      // The edge refuses unparsable addresses already; anything else evaluating here must not slip through.
      if (!ip) throw new Error(`client address ${JSON.stringify(i.clientIp)} is not an IP address`);
      const hit = sets.find((s) => s.set.has(ip));
      const where = hit ? `client ${ip} in ${hit.name}` : `client ${ip} in none of ${list(names)}`;
      return { match: inside ? !!hit : !hit, detail: where };
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
  return {
    name: `claims.${claim}`,
    test: (i) => {
      if (!i.identity) return { match: 'unknown', detail: `${want}: no signed-in user` };
      const v = Object.prototype.hasOwnProperty.call(i.identity.claims, claim) ? i.identity.claims[claim] : undefined;
      const seen = v === undefined ? 'absent' : JSON.stringify(v);
      let ok = true;
      if (t.exists !== undefined) ok &&= (v !== undefined && v !== null) === t.exists;
      if (t.equals !== undefined) ok &&= v === t.equals;
      if (t.includes !== undefined) {
        // arrays (amr, roles) or space-separated strings (scp)
        ok &&= Array.isArray(v) ? v.includes(t.includes) : typeof v === 'string' ? v.split(' ').includes(t.includes) : false;
      }
      return { match: ok, detail: `${want}: ${seen}` };
    },
  };
}
