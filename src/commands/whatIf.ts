/**
 * drawbridge what-if: explains the decision a request would get.
 * Exit codes: 0 allow, 3 deny, 4 step-up; 1 invalid config; 2 bad usage.
 */
import { loadConfigFile, type Config } from '../config/load.js';
import { ConfigUnreadableError, UsageError, formatProblem } from '../errors.js';
import { formatSeconds } from '../policy/engine.js';
import { WhatIfError, whatIf, type WhatIfInput, type WhatIfResult } from '../policy/simulate.js';
import { parseCommandArgs } from './usage.js';

export const EXIT_FOR: Record<WhatIfResult['decision'], number> = { allow: 0, deny: 3, 'step-up': 4 };

const USAGE = `usage: drawbridge what-if --config FILE --app NAME [--user U] [--groups a,b] [--ip IP]
         [--claims JSON] [--at ISO-8601] [--client browser|native] [--method M] [--path P]
         [--user-agent UA] [--signed-in-ago DURATION] [--json]
defaults: --ip 192.0.2.1 (somewhere outside every private range), --at now, --client browser,
          --method GET, --path the app's root (its externalUrl path), signed in just now (auth_time) unless --claims or --signed-in-ago say otherwise
exit: 0 allow, 3 deny, 4 step-up required; 1 invalid config; 2 bad usage
`;

/** Loads a config for simulation; problems go to stderr. Lint mode: missing secrets do not matter here. */
export async function loadForSimulation(file: string, cmd: string): Promise<Config | number> {
  try {
    const r = await loadConfigFile(file, { mode: 'lint' });
    if (!r.config) {
      for (const p of r.problems) if (p.severity === 'error') process.stderr.write(formatProblem(p) + '\n');
      return 1;
    }
    return r.config;
  } catch (e) {
    if (e instanceof ConfigUnreadableError) {
      process.stderr.write(`drawbridge ${cmd}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

export async function whatIfCommand(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseCommandArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        app: { type: 'string' },
        user: { type: 'string' },
        groups: { type: 'string' },
        ip: { type: 'string' },
        claims: { type: 'string' },
        at: { type: 'string' },
        client: { type: 'string' },
        method: { type: 'string' },
        path: { type: 'string' },
        'user-agent': { type: 'string' },
        'signed-in-ago': { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    }, USAGE).values;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`drawbridge what-if: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!values.config || !values.app) {
    process.stderr.write(`drawbridge what-if: --config and --app are required\n${USAGE}`);
    return 2;
  }
  let input: WhatIfInput;
  try {
    input = inputFromFlags(values);
  } catch (e) {
    process.stderr.write(`drawbridge what-if: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const config = await loadForSimulation(String(values.config), 'what-if');
  if (typeof config === 'number') return config;
  let result: WhatIfResult;
  try {
    result = await whatIf(config, input);
  } catch (e) {
    if (e instanceof WhatIfError) {
      process.stderr.write(`drawbridge what-if: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  const app = config.apps.find((a) => a.name === result.app);
  const signsIn = (app?.preAuth ?? 'oidc') === 'oidc';
  process.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : formatResult(result, signsIn, app?.sso?.plugin));
  return EXIT_FOR[result.decision];
}

function inputFromFlags(v: Record<string, string | boolean | undefined>): WhatIfInput {
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  let claims: Record<string, unknown> | undefined;
  if (s('claims') !== undefined) {
    try {
      claims = JSON.parse(s('claims')!);
    } catch {
      throw new Error('--claims must be a JSON object, e.g. \'{"amr":["pwd","mfa"]}\'');
    }
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('--claims must be a JSON object');
  }
  const client = s('client');
  if (client !== undefined && client !== 'browser' && client !== 'native') throw new Error('--client must be browser or native');
  return {
    app: s('app')!,
    user: s('user'),
    groups: s('groups')
      ?.split(',')
      .map((g) => g.trim())
      .filter(Boolean),
    ip: s('ip'),
    claims,
    at: s('at'),
    client: client as WhatIfInput['client'],
    method: s('method'),
    path: s('path'),
    userAgent: s('user-agent'),
    signedInAgo: s('signed-in-ago'),
  };
}

/**
 * `signsIn`: the app is oidc. A result without an identity is then a request the edge refused
 * before sign-in (TRACE), which the header called passthrough on an app that signs users in.
 * `ssoPlugin`: the app's sso plugin, which what-if does not run.
 */
export function formatResult(r: WhatIfResult, signsIn = false, ssoPlugin?: string): string {
  const nobody = signsIn ? 'anyone (refused before sign-in: who signs in does not matter)' : 'anyone (passthrough: no sign-in)';
  const who = r.identity ? `${r.identity.user}${r.identity.groups.length ? ` (groups: ${r.identity.groups.join(', ')})` : ''} with a ${r.identity.via === 'bearer' ? 'bearer token (native)' : 'browser session'}` : nobody;
  const lines = [`What if ${who}`, `  from ${r.clientIp} sends ${r.method} ${r.path} to ${r.app} at ${r.at}?`, ''];
  const verdict = r.decision === 'allow' ? 'ALLOW' : r.decision === 'deny' ? `DENY (${r.status})` : `STEP-UP REQUIRED (${r.status})`;
  lines.push(`Decision: ${verdict}`);
  if (r.publicReason) lines.push(`  the user sees: ${r.publicReason}`);
  if (r.assignment) lines.push(`Assignment: ${r.assignment.assigned ? 'assigned' : 'NOT assigned'} (${r.assignment.reason})`);
  if (r.policies.length) {
    lines.push('Policies:');
    const width = Math.max(...r.policies.map((p) => p.policy.length));
    for (const p of r.policies) {
      const name = p.policy.padEnd(width);
      if (!p.applied) {
        lines.push(`  - ${name}  not applied: ${p.decidedBy} did not match (${p.detail})`);
        continue;
      }
      const what = [p.grant, p.signInFrequency !== undefined ? `signInFrequency ${formatSeconds(p.signInFrequency)}` : undefined].filter(Boolean).join(' + ');
      const result = p.result === 'unmet' ? `unmet, needs ${p.unmet?.join(', ')}` : p.result === 'error' ? `could not be evaluated: ${p.detail}; counted as block` : p.result;
      lines.push(`  + ${name}  APPLIED: ${what} -> ${result}`);
      if (p.result !== 'error') lines.push(`    ${' '.repeat(width)}  because ${p.detail}`);
    }
  } else if (r.decision === 'deny' && !r.assignment) {
    // refused by the edge or by the bearer token checks, before any policy is looked at
    lines.push(`Refused before any policy: ${r.reasons.join('; ')}`);
  } else if (!r.assignment || r.assignment.assigned) {
    lines.push('Policies: none apply to this app');
  }
  if (r.decision === 'step-up' && r.stepUp) {
    lines.push(`Would be asked for: ${r.askFor.join(' and ')}`);
    const params = [r.stepUp.acrValues ? `acr_values=${r.stepUp.acrValues}` : '', r.stepUp.maxAge !== undefined ? `max_age=${r.stepUp.maxAge}` : '', r.stepUp.prompt ? `prompt=${r.stepUp.prompt}` : ''].filter(Boolean).join(' ');
    lines.push(`  browser: back to the identity provider with ${params}; native client: 401 WWW-Authenticate insufficient_user_authentication`);
  } else if (r.askFor.length) {
    lines.push(`Cannot be met here: ${r.askFor.join(' and ')}`);
  }
  // The sso stage is a plugin's code, which may reach the network (kcd-shim's delegation service):
  // it is not run here, and an ALLOW alone read as "this user gets in" where it answers 502 to all.
  if (r.decision === 'allow' && ssoPlugin) lines.push(`Not simulated: ${notSimulated(ssoPlugin)}`);
  return lines.join('\n') + '\n';
}

/** What an ALLOW does not cover on an app whose sso stage is a plugin (what-if and test-policies say it). */
export function notSimulated(ssoPlugin: string): string {
  return `the app's sso plugin ${ssoPlugin} runs after these checks and may still refuse the request`;
}
