/**
 * Conditional access: which policies apply to a request and what follows.
 *
 * Combination rule (documented in README and what-if): every policy whose
 * conditions all match applies. `block` wins over everything. Requirements
 * add up: requireMfa, requireCompliantDevice and the shortest signInFrequency
 * of all applying policies must all be met. `allow` adds nothing; with no
 * applying policy the request is allowed. A policy that cannot be evaluated
 * (an error in a condition) counts as a block: fail closed.
 *
 * Unmet MFA or sign-in freshness can be fixed by signing in again, so they
 * are a step-up (RFC 9470); an unmet device requirement cannot, so it denies.
 * Without an identity (passthrough apps) no requirement can be met: deny.
 */
import { parseDuration } from '../config/duration.js';
import type { Identity, StepUp } from '../pipeline/stage.js';
import { compileConditions, type Condition, type ConditionsSpec, type PolicyInput } from './conditions.js';
import { meetsMfa, signInAge } from '../identity/claims.js';

export type Grant = 'block' | 'allow' | 'requireMfa' | 'requireCompliantDevice';

export interface PolicySpec {
  readonly when?: ConditionsSpec;
  readonly grant?: Grant;
  readonly session?: { readonly signInFrequency?: string };
}

export interface RequirementOptions {
  /** acr values that count as MFA; the first is the one a step-up asks for */
  readonly mfaAcrValues: readonly string[];
  /** the claim that says a device is compliant, and the value it must have */
  readonly compliantDeviceClaim: string;
  readonly compliantDeviceValue: string | number | boolean;
  /** identity.clockTolerance in seconds: how far ahead of this clock an auth_time may be */
  readonly clockToleranceS?: number;
}

export const DEFAULT_REQUIREMENTS: RequirementOptions = Object.freeze({ mfaAcrValues: ['mfa'], compliantDeviceClaim: 'device_compliant', compliantDeviceValue: true, clockToleranceS: 60 });

export type DecisionKind = 'allow' | 'deny' | 'step-up';

export interface PolicyTrace {
  readonly policy: string;
  readonly applied: boolean;
  /** the condition that decided: the first that did not match, or "all conditions" */
  readonly decidedBy: string;
  readonly detail: string;
  readonly grant?: Grant;
  /** seconds */
  readonly signInFrequency?: number;
  /** for applying policies: what their grant and session control came to */
  readonly result?: 'block' | 'allow' | 'met' | 'unmet' | 'error';
  readonly unmet?: readonly string[];
}

export interface Evaluation {
  readonly decision: DecisionKind;
  /** every policy considered, in order, applied or not */
  readonly policies: readonly PolicyTrace[];
  /** full reasons (audit, logs): one per applying policy */
  readonly reasons: readonly string[];
  /** safe to show to the user */
  readonly publicReason?: string;
  /** deny status: 403 block/unmet, 401 step-up */
  readonly status?: number;
  readonly stepUp?: StepUp;
  /** what the user would be asked for, in words */
  readonly askFor: readonly string[];
}

interface CompiledPolicy {
  readonly name: string;
  readonly conditions: readonly Condition[];
  readonly grant?: Grant;
  readonly frequencyS?: number;
}

/** Policies that apply to an app: the ones it lists, then any other that names it in `when.apps`. */
export function policyNamesFor(app: { name: string; conditionalAccess?: readonly string[] }, policies: Readonly<Record<string, PolicySpec>>): string[] {
  const names = [...(app.conditionalAccess ?? [])];
  const lowerApp = app.name.toLowerCase();
  for (const [name, p] of Object.entries(policies).sort(([a], [b]) => a.localeCompare(b))) {
    if (!names.includes(name) && p.when?.apps?.some((a) => a.toLowerCase() === lowerApp)) names.push(name);
  }
  return names;
}

export class PolicySet {
  private readonly compiled: readonly CompiledPolicy[];

  /** Compiles the named policies; throws when one is unknown or malformed (the config is rejected). */
  constructor(
    names: readonly string[],
    policies: Readonly<Record<string, PolicySpec>>,
    locations: Readonly<Record<string, readonly string[]>>,
    private readonly req: RequirementOptions = DEFAULT_REQUIREMENTS,
  ) {
    this.compiled = names.map((name) => {
      const p = Object.hasOwn(policies, name) ? policies[name] : undefined;
      if (!p) throw new Error(`unknown policy ${JSON.stringify(name)}`);
      let frequencyS: number | undefined;
      if (p.session?.signInFrequency !== undefined) {
        const ms = parseDuration(p.session.signInFrequency);
        if (ms === undefined || ms <= 0) throw new Error(`policy ${name}: signInFrequency ${JSON.stringify(p.session.signInFrequency)} is not a duration`);
        frequencyS = Math.max(1, Math.floor(ms / 1000));
      }
      if (p.grant === undefined && frequencyS === undefined) throw new Error(`policy ${name}: needs a grant or a session control`);
      let conditions: Condition[];
      try {
        conditions = compileConditions(p.when, locations);
      } catch (e) {
        throw new Error(`policy ${name}: ${(e as Error).message}`);
      }
      return Object.freeze({ name, conditions, grant: p.grant, frequencyS });
    });
  }

  get size(): number {
    return this.compiled.length;
  }

  get names(): string[] {
    return this.compiled.map((p) => p.name);
  }

  /** `explain` also describes why policies did not apply (what-if); the gateway leaves it off. */
  evaluate(input: PolicyInput, explain = false): Evaluation {
    const traces: PolicyTrace[] = [];
    const reasons: string[] = [];
    let blocked = false;
    let errored = false;
    let needMfa = false;
    let needDevice = false;
    let maxAgeS: number | undefined;
    const applying: { trace: PolicyTrace; p: CompiledPolicy; at: number }[] = [];

    for (const p of this.compiled) {
      let applied = true;
      let decidedBy = 'all conditions';
      let detail = '';
      try {
        let unknown: Set<Condition> | undefined;
        for (const c of p.conditions) {
          const m = c.test(input);
          if (m === 'unknown') (unknown ??= new Set()).add(c);
          if (m === false) {
            applied = false;
            decidedBy = c.name;
            // Words cost: the deciding miss is described for what-if only, never on the request path.
            if (explain) detail = c.describe(input);
            break;
          }
        }
        if (applied) detail = p.conditions.length ? p.conditions.map((c) => `${c.name}: ${c.describe(input)}${unknown?.has(c) ? ' (unknown, assumed to match)' : ''}`).join('; ') : 'no conditions';
      } catch (e) {
        errored = true;
        const msg = `policy ${p.name}: could not be evaluated (${(e as Error).message}); counted as block`;
        reasons.push(msg);
        traces.push({ policy: p.name, applied: true, decidedBy: 'error', detail: (e as Error).message, grant: p.grant, result: 'error' });
        continue;
      }
      const trace: PolicyTrace = { policy: p.name, applied, decidedBy, detail, grant: p.grant, signInFrequency: p.frequencyS };
      if (!applied) {
        traces.push(trace);
        continue;
      }
      applying.push({ trace, p, at: traces.length });
      if (p.grant === 'block') blocked = true;
      if (p.grant === 'requireMfa') needMfa = true;
      if (p.grant === 'requireCompliantDevice') needDevice = true;
      if (p.frequencyS !== undefined) maxAgeS = maxAgeS === undefined ? p.frequencyS : Math.min(maxAgeS, p.frequencyS);
      traces.push(trace);
    }

    const id = input.identity;
    const mfaOk = needMfa ? this.hasMfa(id) : true;
    const deviceOk = needDevice ? this.deviceCompliant(id) : true;
    const fresh = maxAgeS !== undefined ? this.freshness(id, input.now, maxAgeS) : { ok: true, detail: '' };

    // Per-policy results, in words for the audit trail and what-if.
    for (const { trace, p, at } of applying) {
      const unmet: string[] = [];
      if (p.grant === 'requireMfa' && !mfaOk) unmet.push('mfa');
      if (p.grant === 'requireCompliantDevice' && !deviceOk) unmet.push('compliant device');
      if (p.frequencyS !== undefined && !this.freshness(id, input.now, p.frequencyS).ok) unmet.push(`sign-in within ${p.frequencyS}s`);
      const result = p.grant === 'block' ? 'block' : unmet.length ? 'unmet' : p.grant === 'allow' && p.frequencyS === undefined ? 'allow' : 'met';
      // Written out, not spread: a spread with a conditional part copies through V8's slow path,
      // and was half of an evaluation's time (each request to an app with policies runs one).
      const done: { -readonly [K in keyof PolicyTrace]: PolicyTrace[K] } = { policy: trace.policy, applied: trace.applied, decidedBy: trace.decidedBy, detail: trace.detail, grant: trace.grant, signInFrequency: trace.signInFrequency, result };
      if (unmet.length) done.unmet = unmet;
      traces[at] = done;
      const what = [p.grant, p.frequencyS !== undefined ? `signInFrequency ${p.frequencyS}s` : undefined].filter(Boolean).join(' + ');
      const outcome = result === 'allow' || result === 'block' ? result : `${what} ${result}`;
      reasons.push(`policy ${p.name}: applied (${trace.detail}); ${outcome}${unmet.length ? `: needs ${unmet.join(', ')}` : ''}${p.frequencyS !== undefined && fresh.detail ? ` (${fresh.detail})` : ''}`);
    }

    if (errored || blocked) {
      return {
        decision: 'deny',
        policies: traces,
        reasons,
        status: 403,
        publicReason: errored ? 'Access could not be evaluated; your administrator can find the details with the correlation ID.' : 'Your organization\'s access policy blocks this app under the current conditions.',
        askFor: [],
      };
    }
    const askFor: string[] = [];
    if (!mfaOk) askFor.push('multi-factor authentication');
    if (!fresh.ok) askFor.push(`a sign-in within the last ${formatSeconds(maxAgeS!)}`);
    if (!deviceOk) {
      return { decision: 'deny', policies: traces, reasons, status: 403, publicReason: 'This app can only be used from a compliant device.', askFor: ['a compliant device'] };
    }
    if (!askFor.length) return { decision: 'allow', policies: traces, reasons, askFor };
    if (!id) {
      // Nobody signed in on a passthrough app: there is no sign-in to step up.
      return { decision: 'deny', policies: traces, reasons: [...reasons, 'requirements cannot be met without sign-in'], status: 403, publicReason: 'This app requires a sign-in that it is not set up for.', askFor };
    }
    const stepUp: StepUp = {
      ...(!mfaOk ? { acrValues: this.req.mfaAcrValues[0] ?? 'mfa' } : {}),
      ...(!fresh.ok ? { maxAge: maxAgeS!, prompt: 'login' as const } : {}),
    };
    return {
      decision: 'step-up',
      policies: traces,
      reasons,
      status: 401,
      stepUp,
      publicReason: !mfaOk ? 'This app requires multi-factor authentication.' : 'This app requires you to sign in again.',
      askFor,
    };
  }

  private hasMfa(id: Identity | undefined): boolean {
    return !!id && meetsMfa(id.claims, this.req.mfaAcrValues);
  }

  private deviceCompliant(id: Identity | undefined): boolean {
    return !!id && id.claims[this.req.compliantDeviceClaim] === this.req.compliantDeviceValue;
  }

  private freshness(id: Identity | undefined, now: number, maxAgeS: number): { ok: boolean; detail: string } {
    if (!id) return { ok: false, detail: 'no sign-in' };
    const age = signInAge(id.claims, now, this.req.clockToleranceS ?? 60);
    // No auth_time: the sign-in's age is unknown, so it is not fresh enough.
    if (!age) return { ok: false, detail: 'no auth_time' };
    if (age.ahead) return { ok: false, detail: 'auth_time in the future' };
    return { ok: age.ageS <= maxAgeS, detail: `signed in ${formatSeconds(Math.max(0, age.ageS))} ago` };
  }
}

/** The RFC 9470 challenge a bearer client gets with a step-up. */
export function stepUpChallenge(stepUp: StepUp): string {
  const parts = ['Bearer error="insufficient_user_authentication"', `error_description="${stepUp.acrValues ? 'A stronger authentication level is required' : 'A more recent authentication is required'}"`];
  if (stepUp.acrValues) parts.push(`acr_values="${stepUp.acrValues.replace(/["\\]/g, '')}"`);
  if (stepUp.maxAge !== undefined) parts.push(`max_age=${stepUp.maxAge}`);
  return parts.join(', ');
}

/** Names of the policies mentioned in a decision's reasons (the audit record lists them). */
export function policyNamesIn(reasons: readonly string[] | undefined): string[] {
  const out: string[] = [];
  for (const r of reasons ?? []) {
    const m = /^policy ([A-Za-z0-9][A-Za-z0-9._-]*):/.exec(r);
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

export function formatSeconds(s: number): string {
  if (s % 86400 === 0 && s >= 86400) return `${s / 86400}d`;
  if (s % 3600 === 0 && s >= 3600) return `${s / 3600}h`;
  if (s % 60 === 0 && s >= 60) return `${s / 60}m`;
  return `${s}s`;
}
