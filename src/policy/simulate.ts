/**
 * What-if: the decision a request would get, computed with the same code the
 * gateway runs (assignment stage, policy engine), from inputs an operator
 * types instead of a live request. Used by `what-if` and `test-policies`.
 */
import type { Config } from '../config/load.js';
import type { AppConfig } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { parseIp } from '../config/net.js';
import type { Identity, RequestContext } from '../pipeline/stage.js';
import { assignment } from '../plugins/access/assignment.js';
import { conditionalAccessOptionsFor, requirementsOf } from '../plugins/access/conditionalAccess.js';
import { DrawbridgeError } from '../errors.js';
import { PolicySet, type DecisionKind, type Evaluation, type PolicyTrace } from './engine.js';
import type { StepUp } from '../pipeline/stage.js';
import { normalizeTarget } from '../gateway/normalize.js';
import { Router, externalUrlOf, prefixOf, wildcardHostOf } from '../gateway/router.js';
import { REFUSED_METHODS } from '../gateway/edge.js';
import { BearerError, NO_BEARER_TOKENS, checkIssuedToUser, checkScopes, refusalStatus } from '../identity/bearer.js';
import { groupsFromClaims } from '../identity/claims.js';
import { METHODS } from 'node:http';

export interface WhatIfInput {
  app: string;
  user?: string;
  groups?: string[];
  /** default 192.0.2.1: an address on the internet, in no private range */
  ip?: string;
  claims?: Record<string, unknown>;
  /** ISO-8601; default now */
  at?: string;
  client?: 'browser' | 'native';
  method?: string;
  path?: string;
  userAgent?: string;
  /** how long ago the user signed in (sets auth_time unless claims has one); default: just now */
  signedInAgo?: string;
}

export interface WhatIfResult {
  app: string;
  decision: DecisionKind;
  status?: number;
  /** identity as simulated; absent for passthrough apps */
  identity?: { user: string; groups: string[]; via: 'session' | 'bearer'; claims: Record<string, unknown> };
  clientIp: string;
  at: string;
  method: string;
  path: string;
  assignment?: { assigned: boolean; reason: string };
  policies: readonly PolicyTrace[];
  reasons: readonly string[];
  askFor: readonly string[];
  stepUp?: StepUp;
  publicReason?: string;
}

export class WhatIfError extends DrawbridgeError {
  constructor(message: string) {
    super('ERR_WHAT_IF_INPUT', message);
  }
}

export const DEFAULT_CLIENT_IP = '192.0.2.1';

/** How an input is named in a problem with it: what-if's option, or test-policies' case field. */
export type InputName = (field: keyof WhatIfInput) => string;

/** what-if's options: --signed-in-ago for signedInAgo. */
export const optionName: InputName = (field) => `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/**
 * `name` says each input as the user wrote it: a test-policies case with `at: "2026-01-01T10:00"`
 * was told `--at ... has no UTC offset`, an option it never gave.
 */
export async function whatIf(config: Config, input: WhatIfInput, name: InputName = optionName): Promise<WhatIfResult> {
  const app = (config.apps as readonly AppConfig[]).find((a) => a.name.toLowerCase() === input.app.toLowerCase());
  if (!app) throw new WhatIfError(`no app named ${JSON.stringify(input.app)} (apps: ${config.apps.map((a) => a.name).join(', ')})`);
  const now = input.at === undefined ? Date.now() : Date.parse(input.at);
  if (!Number.isFinite(now)) throw new WhatIfError(`${name('at')} ${JSON.stringify(input.at)} is not an ISO-8601 time`);
  // Without an offset JavaScript reads the time in this machine's zone: a test file passed on a
  // laptop in Berlin and failed in CI on UTC.
  if (input.at !== undefined && !/(?:Z|[+-]\d{2}(?::?\d{2})?)$/i.test(input.at.trim())) throw new WhatIfError(`${name('at')} ${JSON.stringify(input.at)} has no UTC offset: add Z or one such as +01:00 (without it the time would be read in this machine's zone)`);
  const clientIp = input.ip ?? DEFAULT_CLIENT_IP;
  const ip = parseIp(clientIp);
  if (!ip) throw new WhatIfError(`${name('ip')} ${JSON.stringify(clientIp)} is not an IP address`);
  const method = (input.method ?? 'GET').toUpperCase();
  // Node's parser knows a fixed list of methods and answers 400 to any other before the gateway sees it.
  if (!METHODS.includes(method)) throw new WhatIfError(`${name('method')} ${JSON.stringify(input.method)}: the gateway answers 400 to a method its HTTP parser does not know`);
  if (input.path !== undefined && !input.path.startsWith('/')) throw new WhatIfError(`${name('path')} must start with /`);
  // Policies see the path as the client asks for it, the app's prefix included (the path the app
  // receives has the internal prefix instead); a path outside the prefix never reaches this app.
  // Without --path, the app's own root.
  const prefix = prefixOf(externalUrlOf(app.externalUrl));
  // the gateway decides on the normalized path; so does what-if, or the two would disagree
  const target = normalizeTarget(input.path ?? prefix);
  if (!target.ok) throw new WhatIfError(`${name('path')} ${JSON.stringify(input.path ?? prefix)}: the gateway answers 400 to this path (${target.reason})`);
  const path = target.path;
  // An app under a longer prefix on the same host takes its paths (/admin/x from the app at /),
  // other spellings of that prefix too (/ADMIN/x): this app's policies never see them.
  const taker = routeOf(config, app, path);
  if (taker?.app === app && taker.canonical) throw new WhatIfError(`${name('path')} ${path} is another spelling of app ${app.name}'s prefix ${prefix}: the gateway answers 307 to ${taker.canonical} (ask about that path)`);
  if (!path.startsWith(prefix) && path !== prefix.slice(0, -1)) throw new WhatIfError(`${name('path')} ${path} is not under app ${app.name}'s prefix ${prefix}: the gateway would not route it to this app (policies match the path as the client requests it, prefix included)`);
  if (taker && taker.app !== app) throw new WhatIfError(`${name('path')} ${path} is app ${taker.app.name}'s, published at ${prefixOf(externalUrlOf(taker.app.externalUrl))} on the same host: the gateway ${taker.canonical ? `answers 307 to ${taker.canonical}` : 'routes it there'}, and app ${app.name}'s policies never see it`);

  const base = { app: app.name, clientIp: ip.toString(), at: new Date(now).toISOString(), method, path, policies: [], reasons: [], askFor: [] };
  // The edge answers these before routing: no app, sign-in or policy is involved.
  const refusedMethod = REFUSED_METHODS.get(method);
  if (refusedMethod !== undefined) return { ...base, decision: 'deny', status: 405, reasons: [refusedMethod], publicReason: refusedMethod };

  let identity: Identity | undefined;
  if ((app.preAuth ?? 'oidc') === 'oidc') {
    if (!input.user) throw new WhatIfError(`app ${app.name} signs users in: give ${name('user')} (and ${name('groups')}, ${name('claims')} as needed)`);
    const claims: Record<string, unknown> = { ...(input.claims ?? {}) };
    // A browser session always has the ID token's auth_time; access tokens mostly carry none, and the
    // gateway counts a token without one as not fresh: a native client's sign-in time is simulated
    // only when given.
    if (claims.auth_time === undefined && (input.client !== 'native' || input.signedInAgo !== undefined)) {
      const ago = input.signedInAgo === undefined ? 0 : parseDuration(input.signedInAgo);
      if (ago === undefined) throw new WhatIfError(`${name('signedInAgo')} ${JSON.stringify(input.signedInAgo)} is not a duration`);
      claims.auth_time = Math.floor((now - ago) / 1000);
    }
    // groups as the gateway reads them from a token: --groups fills the groups claim, and an overage
    // (hasgroups, _claim_names) or an unreadable shape in --claims makes them incomplete
    const groupsClaim = config.identity?.claims?.groups ?? 'groups';
    if (input.groups !== undefined && claims[groupsClaim] === undefined) claims[groupsClaim] = input.groups;
    const { groups, incomplete } = groupsFromClaims(claims, groupsClaim);
    identity = { user: input.user, groups, ...(incomplete ? { groupsIncomplete: true } : {}), via: input.client === 'native' ? 'bearer' : 'session', claims };
  }

  const result: WhatIfResult = { ...base, decision: 'allow' };
  if (identity) result.identity = { user: identity.user, groups: [...identity.groups], via: identity.via, claims: { ...identity.claims } };

  // The checks oidc preauth makes on a bearer token that need no token: the signature, issuer,
  // audience value and expiry are the provider's business and are not simulated.
  if (identity?.via === 'bearer') {
    if (!app.audience) return { ...result, decision: 'deny', status: 401, reasons: [`${NO_BEARER_TOKENS} (the app sets no audience)`], publicReason: NO_BEARER_TOKENS };
    try {
      checkIssuedToUser(identity.claims);
      checkScopes(identity.claims, app.requiredScopes ?? []);
    } catch (e) {
      if (!(e instanceof BearerError)) throw e;
      const read = e.check === 'app_token' ? `${e.detail} in ${name('claims')}` : `what-if reads the token's scope, scp and roles from ${name('claims')}`;
      return { ...result, decision: 'deny', status: refusalStatus(e), reasons: [`bearer token refused (${e.check}): ${e.publicMessage} (${read})`], publicReason: e.publicMessage };
    }
  }

  // Assignment runs before conditional access in the pipeline; an unassigned user never reaches the policies.
  if (app.assignment && identity) {
    const stage = await assignment.create(app.assignment as never, undefined as never);
    const d = await stage.run({ identity, app: { name: app.name, externalUrl: app.externalUrl } } as unknown as RequestContext);
    const assigned = d.kind === 'continue';
    const reason = (d.kind === 'continue' || d.kind === 'deny' ? d.reasons?.[0] : undefined) ?? '';
    result.assignment = { assigned, reason };
    if (!assigned) return { ...result, decision: 'deny', status: d.kind === 'deny' ? d.status : 403, reasons: [reason], publicReason: d.kind === 'deny' ? d.publicReason : undefined };
  }

  const opts = conditionalAccessOptionsFor(app, config);
  if (!opts) return result;
  const set = new PolicySet(opts.policyNames, opts.policies, opts.locations, requirementsOf(config));
  let e: Evaluation;
  try {
    e = set.evaluate({ app: app.name, identity, clientIp: ip.toString(), method, path, userAgent: input.userAgent, now }, true);
  } catch (err) {
    throw new WhatIfError(`evaluation failed: ${(err as Error).message}`);
  }
  return { ...result, decision: e.decision, status: e.status, policies: e.policies, reasons: e.reasons, askFor: e.askFor, stepUp: e.stepUp, publicReason: e.publicReason };
}

/** The app the gateway routes `path` on `app`'s host to, as the edge's route table does. */
function routeOf(config: Config, app: AppConfig, path: string): { app: AppConfig; canonical?: string } | undefined {
  const router = new Router<{ name: string; app: AppConfig }>();
  for (const a of config.apps as readonly AppConfig[]) {
    const url = externalUrlOf(a.externalUrl);
    router.add(wildcardHostOf(url), prefixOf(url), { name: a.name, app: a });
  }
  const m = router.match(wildcardHostOf(externalUrlOf(app.externalUrl)), path);
  return m && { app: m.target.app, canonical: m.canonical };
}
