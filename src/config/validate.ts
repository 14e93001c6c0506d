/** JSON Schema validation with messages an operator can act on. */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formatsPlugin from 'ajv-formats';
import { DURATION_PATTERN } from './duration.js';
import { NOT_EMPTY_CONDITION, PATH_GLOB_PATTERN } from './schema.js';
import type { KeyPath } from './source.js';

export interface SchemaIssue {
  path: KeyPath;
  /** point at the key rather than the value (unknown keys) */
  atKey: boolean;
  message: string;
}

// verbose: the messages below are built from each error's parentSchema (known keys, union branches).
// Without strict mode Ajv ignores a format it does not know with a line on stderr, so a plugin's
// `format: ipv5` would check nothing and say so outside lint's output: it fails the compile instead.
// ajv-formats is CommonJS: under NodeNext its default import is module.exports, typed as the namespace.
const addFormats = formatsPlugin as unknown as typeof formatsPlugin.default;
const ajv = new Ajv2020({ allErrors: true, strict: false, allowUnionTypes: true, verbose: true, logger: { log: console.log, warn: refuseUnknownFormat, error: console.error } });
addFormats(ajv);
// `format: uri` is what `new URL()` accepts, the parser the gateway and plugins build URLs with: a
// plugin's schema can then refuse at load time (in lint too) what its create() would refuse at start.
ajv.addFormat('uri', { type: 'string', validate: (s: string) => URL.canParse(s) });

function refuseUnknownFormat(...args: unknown[]): void {
  const m = /^unknown format "(.*)" ignored in schema at path "#?(.*)"$/s.exec(String(args[0]));
  if (!m) return console.warn(...args);
  throw new Error(`unknown format ${JSON.stringify(m[1])} at ${m[2] || '/'} (known: ${Object.keys(ajv.formats).sort().join(', ')})`);
}
const cache = new WeakMap<object, ValidateFunction>();

export function compileSchema(schema: object): ValidateFunction {
  let fn = cache.get(schema);
  if (!fn) {
    const copy = JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
    // Ajv keeps every schema with an `$id` by that id and refuses a second one: the edited plugin
    // file a reload loads again (or a fork of a plugin) was refused as "not a valid JSON Schema"
    // until a restart. The newest one takes the id; functions compiled before keep working.
    if (typeof copy.$id === 'string' && ajv.getSchema(copy.$id)) ajv.removeSchema(copy.$id);
    fn = ajv.compile(copy);
    cache.set(schema, fn);
  }
  return fn;
}

export function validateAgainst(schema: object, value: unknown, base: KeyPath = []): SchemaIssue[] {
  const fn = compileSchema(schema);
  if (fn(value)) return [];
  return describeErrors(fn.errors ?? [], value, base);
}

/** JSON pointer -> key path; a segment is an index only inside a list (a policy may be named "2024"). */
function pointerToPath(pointer: string, root: unknown): (string | number)[] {
  if (!pointer) return [];
  const path: (string | number)[] = [];
  let v: any = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const key = Array.isArray(v) && /^\d+$/.test(seg) ? Number(seg) : seg;
    path.push(key);
    v = v?.[key];
  }
  return path;
}

function valueAt(root: unknown, path: (string | number)[]): unknown {
  let v: any = root;
  for (const s of path) v = v?.[s];
  return v;
}

const STRING_SHAPE = new Set(['pattern', 'format', 'minLength', 'maxLength']);

function describeErrors(errors: ErrorObject[], root: unknown, base: KeyPath): SchemaIssue[] {
  // A union reports one error per branch plus the anyOf itself; keep only the anyOf,
  // described from its branches ("must be default, long or a duration").
  const unionSchemaPaths = errors.filter((e) => e.keyword === 'anyOf').map((e) => e.schemaPath + '/');
  // A misspelt required key shows up twice: as unknown ("internalURL") and as missing
  // ("internalUrl"). The did-you-mean says it all, so the missing one is dropped.
  const suggested = new Set<string>();
  for (const e of errors) {
    if (e.keyword !== 'additionalProperties') continue;
    const known = Object.keys((e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
    const hint = suggest((e.params as { additionalProperty: string }).additionalProperty, known);
    if (hint) suggested.add(`${e.instancePath}\u0000${hint}`);
  }
  const out: SchemaIssue[] = [];
  const seen = new Set<string>();
  // A string that fails its pattern usually fails its format too (a plugin's `pattern` with
  // `format: uri`): one value, one problem, the first its schema names.
  const shapeSaid = new Set<string>();
  for (const e of errors) {
    if (unionSchemaPaths.some((p) => e.schemaPath.startsWith(p))) continue;
    if (STRING_SHAPE.has(e.keyword)) {
      if (shapeSaid.has(e.instancePath)) continue;
      shapeSaid.add(e.instancePath);
    }
    if (e.keyword === 'required' && suggested.has(`${e.instancePath}\u0000${(e.params as { missingProperty: string }).missingProperty}`)) continue;
    const path = pointerToPath(e.instancePath, root);
    const value = valueAt(root, path);
    let issue: SchemaIssue;
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        const parent = e.parentSchema as { properties?: Record<string, unknown>; patternProperties?: Record<string, unknown> };
        if (key === '<<') {
          issue = { path: [...path, key], atKey: true, message: 'YAML merge keys (<<) are not supported: repeat the keys, or alias a whole value (&name / *name)' };
        } else if (parent.patternProperties && !parent.properties) {
          const pattern = Object.keys(parent.patternProperties)[0] ?? '';
          issue = { path: [...path, key], atKey: true, message: describePattern(pattern, key) };
        } else {
          const known = Object.keys(parent.properties ?? {});
          const hint = suggest(key, known);
          issue = { path: [...path, key], atKey: true, message: `unknown key ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}` };
        }
        break;
      }
      case 'required': {
        const key = (e.params as { missingProperty: string }).missingProperty;
        issue = { path, atKey: path.length > 0, message: `missing required key ${JSON.stringify(key)}` };
        break;
      }
      case 'type':
        issue = { path, atKey: false, message: `must be ${article((e.params as { type: string }).type)}, not ${kindOf(value)}` };
        break;
      case 'pattern': {
        const pattern = (e.params as { pattern: string }).pattern;
        // Patterns we know get a plain-words message; a plugin's own pattern is explained by its description.
        const description = (e.parentSchema as { description?: unknown } | undefined)?.description;
        issue = { path, atKey: false, message: describePattern(pattern, value, typeof description === 'string' ? description : undefined) };
        break;
      }
      case 'anyOf':
        issue = { path, atKey: false, message: `${JSON.stringify(value)} is not allowed here: must be ${describeUnion(e.parentSchema as { anyOf: any[] })}${quotedNumber(value, e.parentSchema as { anyOf: any[] })}` };
        break;
      case 'uniqueItems': {
        // Point at the later copy: the first one is where the reader expects it.
        const { i, j } = e.params as { i: number; j: number };
        const later = Math.max(i, j);
        issue = { path: [...path, later], atKey: false, message: `${JSON.stringify((value as unknown[])[later])} is listed twice` };
        break;
      }
      case 'minItems': {
        const limit = (e.params as { limit: number }).limit;
        const description = (e.parentSchema as { description?: unknown } | undefined)?.description;
        // A policy condition's empty list is no typo to shrug at: it switches the policy off.
        const condition = typeof description === 'string' && description.endsWith(NOT_EMPTY_CONDITION);
        issue = { path, atKey: false, message: condition ? 'must not be empty: an empty list matches no request, so the policy would never apply; leave the key out for no condition' : limit === 1 ? 'must not be empty' : `must have at least ${limit} items` };
        break;
      }
      case 'minProperties': {
        // (a condition such as a claim's: the keys it may have are the ones to name)
        const known = Object.keys((e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
        const limit = (e.params as { limit: number }).limit;
        issue = { path, atKey: false, message: limit === 1 && known.length ? `needs ${orList(known)}` : `must have at least ${limit} keys` };
        break;
      }
      case 'maxItems':
        issue = { path, atKey: false, message: `must have at most ${(e.params as { limit: number }).limit} items` };
        break;
      case 'minLength': {
        const limit = (e.params as { limit: number }).limit;
        issue = { path, atKey: false, message: limit === 1 ? 'must not be empty' : `must be at least ${limit} characters long` };
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const { comparison, limit } = e.params as { comparison: string; limit: number };
        issue = { path, atKey: false, message: `${JSON.stringify(value)} is out of range: must be ${comparison} ${limit}` };
        break;
      }
      case 'format': {
        const format = (e.params as { format: string }).format;
        issue = { path, atKey: false, message: `${JSON.stringify(value)} is not ${format === 'uri' ? 'a valid URL' : `a valid ${format}`}` };
        break;
      }
      case 'const':
        issue = { path, atKey: false, message: `${JSON.stringify(value)} is not allowed here: must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` };
        break;
      case 'enum': {
        const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v));
        issue = { path, atKey: false, message: `${JSON.stringify(value)} is not allowed here: must be ${orList(allowed)}` };
        break;
      }
      default:
        issue = { path, atKey: false, message: e.message ?? `fails ${e.keyword}` };
    }
    issue.path = [...base, ...issue.path];
    const key = JSON.stringify([issue.path, issue.message]);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(issue);
    }
  }
  return out;
}

/** "a", "a or b", "a, b or c" */
function orList(items: readonly string[]): string {
  return items.length > 1 ? `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}` : (items[0] ?? '');
}

function article(type: string): string {
  if (type === 'object') return 'a mapping';
  if (type === 'array') return 'a list';
  if (type === 'integer') return 'an integer';
  return `a ${type}`;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'binary data (a !!binary value)';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function describePattern(pattern: string, value: unknown, description?: string): string {
  const v = JSON.stringify(value);
  if (pattern === DURATION_PATTERN) return `${v} is not a duration (use e.g. 500ms, 90s, 15m, 8h, 30d or 1h30m: units from the largest down, each once)`;
  if (pattern.startsWith('^[A-Za-z0-9][A-Za-z0-9._-]')) return `${v} is not a valid name: use letters, digits, '.', '_' or '-', starting with a letter or digit`;
  if (pattern.startsWith("^[!#$%&'*+")) return `${v} is not a valid header name`;
  if (pattern === PATH_GLOB_PATTERN) return `${v} must start with / (paths are matched on the request path, which does)`;
  if (pattern.startsWith('^[A-Z]+$')) return `${v} is not an HTTP method (upper case, e.g. GET)`;
  if (pattern.includes('[0-5][0-9]-')) return `${v} is not a time window (use HH:MM-HH:MM, e.g. 08:00-18:00)`;
  if (pattern.startsWith('^[A-Za-z0-9_-]+$')) return `${v} may only hold letters, digits, '_' and '-'`;
  if (description) return `${v} is not valid: ${description.replace(/\.$/, '')}`;
  return `${v} does not match ${pattern}`;
}

/** A port written in quotes is text, not the number a branch takes: say so, or the message reads as a contradiction. */
function quotedNumber(value: unknown, schema: { anyOf: any[] }): string {
  return typeof value === 'string' && /^\d+$/.test(value) && schema.anyOf.some((b) => b.type === 'integer') ? ' (a port is written without quotes)' : '';
}

function describeUnion(schema: { anyOf: any[] }): string {
  const parts = schema.anyOf.map((b) => {
    if ('const' in b) return JSON.stringify(b.const);
    if (b.type === 'integer') return `a port number (${b.minimum ?? 0}-${b.maximum ?? 65535})`;
    if (b.pattern === DURATION_PATTERN) return 'a duration such as 90s';
    if (b.type === 'string' && typeof b.pattern === 'string' && b.pattern.includes(':[0-9]{1,5}')) return 'host:port';
    return b.description ?? b.type ?? 'another form';
  });
  return orList(parts);
}

/** Closest known key within a small edit distance, for "did you mean". */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/**
 * `${env:PORT}` always substitutes a string, but `listen: { http: ${env:PORT} }`
 * means the number. For each path whose whole value came from one reference,
 * read "8080" as 8080 (or "true" as true) when the schema there wants a number
 * or boolean and no string form accepts the text. Changes `root` in place.
 */
export function coerceScalars(schema: object, root: unknown, paths: readonly KeyPath[]): void {
  for (const path of paths) {
    if (!path.length) continue;
    let parent: any = root;
    for (const seg of path.slice(0, -1)) parent = parent?.[seg];
    const last = path[path.length - 1]!;
    const text = parent?.[last];
    if (typeof text !== 'string') continue;
    const candidates = schemasAt(schema, path);
    if (!candidates.length) continue;
    if (candidates.some((c) => c.type === 'string' && compileSchema(c)(text))) continue;
    const wants = (t: string) => candidates.some((c) => c.type === t);
    if ((wants('integer') && /^-?\d+$/.test(text)) || (wants('number') && /^-?\d+(\.\d+)?$/.test(text))) parent[last] = Number(text);
    else if (wants('boolean') && (text === 'true' || text === 'false')) parent[last] = text === 'true';
  }
}

/** The subschemas (unions expanded) that describe the value at `path`. */
function schemasAt(schema: object, path: KeyPath): any[] {
  const expand = (nodes: any[]): any[] => nodes.flatMap((n) => (Array.isArray(n?.anyOf) ? expand(n.anyOf) : [n]));
  let nodes = expand([schema]);
  for (const seg of path) {
    const next: any[] = [];
    for (const n of nodes) {
      if (typeof seg === 'number' && n.items) next.push(n.items);
      else if (typeof seg === 'string' && n.properties?.[seg]) next.push(n.properties[seg]);
      else if (typeof seg === 'string' && n.patternProperties) next.push(...Object.values(n.patternProperties));
    }
    nodes = expand(next);
  }
  return nodes;
}
