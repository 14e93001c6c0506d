/**
 * The conditional-access stage (kind `access`), built per app from the
 * policies that apply to it. It runs after pre-authentication, on every
 * request, so a change in the YAML or a condition that stops holding (time,
 * sign-in age) applies to the very next request.
 *
 * Passthrough apps get it too: location, time, method, path and platform
 * conditions work without a sign-in. A condition that needs an identity
 * (users, groups, claims, clientApps) cannot be decided there; it is taken to
 * match, so a block still blocks, and a requirement (MFA, device, sign-in
 * frequency) that nobody signed in can meet denies with 403: fail closed.
 */
import { parseDuration } from '../../config/duration.js';
import type { Config } from '../../config/load.js';
import type { AppConfig } from '../../config/schema.js';
import { PLUGIN_API_VERSION, type Decision, type Plugin, type RequestContext } from '../../pipeline/stage.js';
import { DEFAULT_REQUIREMENTS, PolicySet, policyNamesFor, stepUpChallenge, type Evaluation, type PolicySpec, type RequirementOptions } from '../../policy/engine.js';

export interface ConditionalAccessOptions {
  /** the policies for this app, in evaluation order */
  policyNames: string[];
  policies: Record<string, PolicySpec>;
  locations: Record<string, string[]>;
  requirements?: Partial<RequirementOptions>;
}

/** The stage's options for an app, or undefined when no policy applies to it (no stage at all). */
export function conditionalAccessOptionsFor(app: Pick<AppConfig, 'name' | 'conditionalAccess'>, config: Pick<Config, 'policies' | 'locations' | 'identity'>): ConditionalAccessOptions | undefined {
  const policies = (config.policies ?? {}) as Record<string, PolicySpec>;
  const policyNames = policyNamesFor(app as { name: string; conditionalAccess?: readonly string[] }, policies);
  if (!policyNames.length) return undefined;
  return { policyNames, policies, locations: (config.locations ?? {}) as Record<string, string[]>, requirements: requirementsOf(config) };
}

/** identity.mfaAcrValues and identity.compliantDevice, over the defaults. */
export function requirementsOf(config: Pick<Config, 'identity'>): RequirementOptions {
  const id = config.identity;
  return {
    mfaAcrValues: id?.mfaAcrValues?.length ? [...id.mfaAcrValues] : DEFAULT_REQUIREMENTS.mfaAcrValues,
    compliantDeviceClaim: id?.compliantDevice?.claim ?? DEFAULT_REQUIREMENTS.compliantDeviceClaim,
    compliantDeviceValue: id?.compliantDevice?.equals ?? DEFAULT_REQUIREMENTS.compliantDeviceValue,
    clockToleranceS: Math.round((parseDuration(id?.clockTolerance ?? '60s') ?? 60_000) / 1000),
  };
}

/** The pipeline decision for an evaluation. */
export function decisionOf(e: Evaluation): Decision {
  if (e.decision === 'allow') return e.reasons.length ? { kind: 'continue', reasons: e.reasons } : { kind: 'continue' };
  if (e.decision === 'step-up') {
    // Browsers (session) are sent back to the provider by the edge's step-up handler;
    // API clients get this 401 and its RFC 9470 challenge as they are.
    return { kind: 'deny', status: 401, reasons: e.reasons, publicReason: e.publicReason, stepUp: e.stepUp, headers: { 'WWW-Authenticate': stepUpChallenge(e.stepUp!) } };
  }
  return { kind: 'deny', status: e.status ?? 403, reasons: e.reasons, publicReason: e.publicReason };
}

export const conditionalAccess: Plugin<ConditionalAccessOptions> = {
  name: 'conditional-access',
  kind: 'access',
  apiVersion: PLUGIN_API_VERSION,
  description: 'Conditional-access policies: block, allow, requireMfa, requireCompliantDevice, signInFrequency (step-up).',
  optionsSchema: {
    type: 'object',
    properties: {
      policyNames: { type: 'array', items: { type: 'string' } },
      policies: { type: 'object' },
      locations: { type: 'object' },
      requirements: { type: 'object' },
    },
    required: ['policyNames', 'policies', 'locations'],
    additionalProperties: false,
  },
  create(options, context) {
    const set = new PolicySet(options.policyNames, options.policies, options.locations, { ...DEFAULT_REQUIREMENTS, ...options.requirements });
    const now = context.now;
    return {
      name: 'conditional-access',
      kind: 'access',
      run(ctx: RequestContext): Decision {
        const ua = ctx.headers['user-agent'];
        const e = set.evaluate({ app: ctx.app.name, identity: ctx.identity, clientIp: ctx.clientIp, method: ctx.method, path: ctx.path, userAgent: typeof ua === 'string' ? ua : undefined, now: now() });
        return decisionOf(e);
      },
    };
  },
};
