/**
 * drawbridge test-policies FILE.yaml [--config FILE]: expected decisions for
 * CI, like `opa test`. Each case has what-if's inputs and an `expect`:
 *
 *   config: ./gateway.config.yaml          # relative to the test file; --config wins
 *   cases:
 *     - name: alice from home needs MFA
 *       app: Payroll
 *       user: alice
 *       groups: [finance]
 *       ip: 198.51.100.7
 *       at: 2026-11-18T10:00:00+01:00
 *       expect: step-up                     # or an object:
 *       # expect: { decision: step-up, status: 401, applied: [mfa-outside-corp], acrValues: mfa, maxAge: 3600 }
 *
 * --json prints the outcome of every case (with what-if's result) as one JSON document.
 *
 * Exit: 0 all passed, 1 a case failed (or the config is invalid), 2 unreadable input.
 */
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { WhatIfError, whatIf, type WhatIfInput, type WhatIfResult } from '../policy/simulate.js';
import { readConfigText, toPlain, yamlReason, type Config } from '../config/load.js';
import { SourceMap } from '../config/source.js';
import { loadForSimulation, notSimulated } from './whatIf.js';
import { UsageError } from '../errors.js';
import { parseCommandArgs } from './usage.js';

interface Expectation {
  decision?: string;
  status?: number;
  applied?: string[];
  acrValues?: string;
  maxAge?: number;
}

interface Case extends Partial<WhatIfInput> {
  name?: string;
  expect?: string | Expectation;
  signedInAgo?: string;
}

const INPUT_KEYS = new Set(['name', 'app', 'user', 'groups', 'ip', 'claims', 'at', 'client', 'method', 'path', 'userAgent', 'signedInAgo', 'expect']);
const EXPECT_KEYS = new Set(['decision', 'status', 'applied', 'acrValues', 'maxAge']);

const USAGE = 'drawbridge test-policies FILE.yaml [--config FILE] [--json]';

export async function testPoliciesCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs({ args, allowPositionals: true, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } } }, USAGE);
  const [file, extra] = parsed.positionals;
  if (!file) throw new UsageError('a test file is required', USAGE);
  if (extra !== undefined) throw new UsageError(`unexpected argument ${extra} (one test file at a time)`, USAGE);
  let doc: { config?: string; cases?: Case[] };
  try {
    doc = await readTestFile(file);
  } catch (e) {
    process.stderr.write(`drawbridge test-policies: ${(e as Error).message}\n`);
    return 2;
  }
  if (doc.config !== undefined && typeof doc.config !== 'string') {
    process.stderr.write(`drawbridge test-policies: ${file}: config: must be a file name, not ${JSON.stringify(doc.config)}\n`);
    return 2;
  }
  const configFile = parsed.values.config ?? (doc.config ? resolve(dirname(resolve(file)), doc.config) : undefined);
  if (!configFile) {
    process.stderr.write(`drawbridge test-policies: ${file} names no config: and --config is not given\n`);
    return 2;
  }
  if (!Array.isArray(doc.cases) || !doc.cases.length) {
    process.stderr.write(`drawbridge test-policies: ${file} has no cases:\n`);
    return 2;
  }
  const config = await loadForSimulation(configFile, 'test-policies');
  if (typeof config === 'number') return config === 2 ? 2 : 1;

  const outcomes: CaseOutcome[] = [];
  for (const [i, c] of (doc.cases as unknown[]).entries()) outcomes.push(await runCase(config, c, i));
  const failed = outcomes.filter((o) => !o.ok).length;
  const total = outcomes.length;
  if (parsed.values.json) {
    process.stdout.write(JSON.stringify({ passed: total - failed, failed, total, config: configFile, cases: outcomes }, null, 2) + '\n');
  } else {
    process.stdout.write(outcomes.map(formatOutcome).join('\n') + `\n\n${total - failed} passed, ${failed} failed (${total} cases, config ${configFile})\n`);
  }
  return failed ? 1 : 0;
}

/** One case as --json shows it: the problems in the case itself, or what differs from what it expects. */
interface CaseOutcome {
  name: string;
  ok: boolean;
  /** the case cannot be run: which field is wrong */
  problems?: string[];
  /** expected fields whose actual value differs (actual null: the result has none) */
  differences?: { field: string; expected: unknown; actual: unknown }[];
  result?: WhatIfResult;
  /** an allow on an app with an sso plugin: what the case could not check */
  notSimulated?: string;
}

async function runCase(config: Config, c: unknown, i: number): Promise<CaseOutcome> {
  const name = c && typeof c === 'object' && typeof (c as Case).name === 'string' ? (c as Case).name! : `case ${i + 1}`;
  const problems = checkCase(c as Case);
  if (problems.length) return { name, ok: false, problems };
  const k = c as Case;
  let result: WhatIfResult;
  try {
    result = await whatIf(config, { ...(k as WhatIfInput), at: k.at === undefined ? undefined : String(k.at) }, (field) => `${field}:`);
  } catch (e) {
    if (!(e instanceof WhatIfError)) throw e;
    return { name, ok: false, problems: [e.message] };
  }
  const want = typeof k.expect === 'string' ? { decision: k.expect } : k.expect!;
  const got = actualFor(result, want);
  const differences = Object.keys(want)
    .filter((f) => JSON.stringify((want as Record<string, unknown>)[f]) !== JSON.stringify(got[f]))
    .map((field) => ({ field, expected: (want as Record<string, unknown>)[field], actual: got[field] ?? null }));
  // (an expected allow passed, but the gateway's plugin stage, not run here, may answer 502 to all)
  const plugin = result.decision === 'allow' ? config.apps.find((a) => a.name === result.app)?.sso?.plugin : undefined;
  const caveat = plugin ? { notSimulated: notSimulated(plugin) } : {};
  return differences.length ? { name, ok: false, differences, result, ...caveat } : { name, ok: true, result, ...caveat };
}

function formatOutcome(o: CaseOutcome): string {
  if (o.ok) return `ok   ${o.name}${o.notSimulated ? ` (not simulated: ${o.notSimulated})` : ''}`;
  if (o.problems) return `FAIL ${o.name}\n${o.problems.map((p) => `     ${p}`).join('\n')}`;
  const diff = o.differences!.flatMap((d) => [`${d.field}:`, `  - expected ${JSON.stringify(d.expected)}`, `  + actual   ${d.actual === null ? 'nothing' : JSON.stringify(d.actual)}`]);
  const reasons = o.result?.reasons.length ? `\n     reasons:\n${o.result.reasons.map((r) => `       ${r}`).join('\n')}` : '';
  return `FAIL ${o.name}\n${diff.map((d) => `     ${d}`).join('\n')}${reasons}`;
}

/**
 * The test file as data, read as the config file is (it sits beside it in the repository, where
 * a change can make it a FIFO, a symlink to /dev/zero or an alias bomb): a regular UTF-8 file
 * under the size limit, one document, its aliases bounded. Not YAML is one line with
 * FILE:LINE:COL, as lint says it: the parser's own message quoted the file on four more lines.
 */
async function readTestFile(file: string): Promise<{ config?: string; cases?: Case[] }> {
  const text = await readConfigText(file);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, logLevel: 'error' });
  const error = doc.errors[0];
  if (error) {
    const pos = lines.linePos(error.pos[0]);
    throw new Error(`cannot read ${file}:${pos.line}:${pos.col}: not valid YAML: ${yamlReason(error)}`);
  }
  return (toPlain(doc, new SourceMap(file, doc, lines), file) as { config?: string; cases?: Case[] } | null) ?? {};
}

function checkCase(c: Case): string[] {
  const problems: string[] = [];
  if (!c || typeof c !== 'object' || Array.isArray(c)) return [`a case must be a mapping (app:, expect: ...), not ${JSON.stringify(c)}`];
  for (const k of Object.keys(c)) if (!INPUT_KEYS.has(k)) problems.push(`unknown key ${JSON.stringify(k)} (known: ${[...INPUT_KEYS].join(', ')})`);
  if (c.app === undefined) problems.push('app: is required');
  if (c.expect === undefined) problems.push('expect: is required (allow, deny, step-up, or a mapping)');
  else if (typeof c.expect === 'string') {
    if (!['allow', 'deny', 'step-up'].includes(c.expect)) problems.push(`expect: ${JSON.stringify(c.expect)} must be allow, deny or step-up`);
  } else if (isMapping(c.expect)) {
    for (const k of Object.keys(c.expect)) if (!EXPECT_KEYS.has(k)) problems.push(`expect: unknown key ${JSON.stringify(k)} (known: ${[...EXPECT_KEYS].join(', ')})`);
  } else {
    problems.push(`expect: ${JSON.stringify(c.expect)} must be allow, deny, step-up or a mapping`);
  }
  // what-if reads these as text; anything else would reach it as a number or a list
  for (const k of ['app', 'name', 'ip', 'method', 'path', 'at', 'userAgent', 'signedInAgo'] as const) {
    const v: unknown = c[k];
    if (v !== undefined && typeof v !== 'string') problems.push(`${k}: must be a string, ${typeof v === 'number' || typeof v === 'boolean' ? `quote ${v}` : `not ${JSON.stringify(v)}`}`);
  }
  if (c.claims !== undefined && !isMapping(c.claims)) problems.push(`claims: must be a mapping of claim names to values, not ${JSON.stringify(c.claims)}`);
  if (c.groups !== undefined && (!Array.isArray(c.groups) || c.groups.some((g) => typeof g !== 'string'))) problems.push('groups: must be a list of names (quote a numeric one)');
  if (c.user !== undefined && typeof c.user !== 'string') problems.push(`user: must be a string (quote ${JSON.stringify(c.user)})`);
  if (c.client !== undefined && c.client !== 'browser' && c.client !== 'native') problems.push(`client: ${JSON.stringify(c.client)} must be browser or native`);
  return problems;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** The actual values of the fields the case expects, so the diff shows only what was asked. */
function actualFor(r: WhatIfResult, want: Expectation): Record<string, unknown> {
  const got: Record<string, unknown> = {};
  if ('decision' in want) got.decision = r.decision;
  if ('status' in want) got.status = r.status ?? 200;
  if ('applied' in want) got.applied = r.policies.filter((p) => p.applied).map((p) => p.policy);
  if ('acrValues' in want) got.acrValues = r.stepUp?.acrValues;
  if ('maxAge' in want) got.maxAge = r.stepUp?.maxAge;
  return got;
}
