/**
 * ${env:NAME} and ${file:path} references. Resolved once at load time, so a
 * secret never sits in the file and the rest of the gateway only sees values.
 */
import { resolve } from 'node:path';
import { FileTooLargeError, NotARegularFileError, snapshotOf, type FileSnapshot } from './regularFile.js';
import type { KeyPath } from './source.js';

/**
 * Secrets, keys and certificates are a few KiB. The limit keeps a reference to a
 * disk image or a log in the wrong place from filling the gateway's memory.
 */
export const MAX_REFERENCED_FILE_BYTES = 1024 * 1024;

const REF = /\$\{(env|file):([^}]*)\}/g;

/** where a value is a secret: one that looks like a reference gone wrong is refused, not used */
const isSecretPath = (path: readonly (string | number)[]) => (path[0] === 'session' && path[1] === 'secrets') || (path[0] === 'identity' && path[1] === 'clientSecret');
/** `{file:/run/x}`, `$(cat x)`, `$env:X`, `file:/run/x`: written as the secret, meant as a reference */
const MISTYPED_REFERENCE = /^\s*[$\{]|(?:^|[^A-Za-z0-9])(?:env|file):/;

export interface SubstitutionIssue {
  path: KeyPath;
  message: string;
  /** unset variable or missing file: a warning in lint, an error at start */
  missing: boolean;
}

export interface SubstitutionResult {
  value: unknown;
  issues: SubstitutionIssue[];
  /** paths whose value could not be resolved (their constraints are not checked in lint) */
  unresolved: Set<string>;
  files: string[];
  /**
   * Each ${file:} file as it was read, once per load: every reference to it gets the same
   * value, and the generation is hashed from these bytes. Hashed from a second read, a write
   * landing between the two left a generation built from the old bytes under the new hash,
   * and every later reload took the file for unchanged.
   */
  read: Map<string, FileSnapshot>;
  /**
   * Paths whose whole value was one resolved reference (`http: ${env:PORT}`). A
   * reference always yields a string; these may be read as the number or boolean
   * the schema wants there (see coerceScalars).
   */
  wholeReferences: KeyPath[];
  /** each reference resolved, with its value: messages about the file must not show the value */
  resolved: { ref: string; value: string }[];
  /**
   * The text as written (JSON of KeyPath -> string) of each value a reference was resolved in:
   * a message that would show something computed from such a value (a normalized form) shows
   * this instead, as redacting the value cannot find what was computed from it.
   */
  written: Map<string, string>;
}

export function substitute(value: unknown, baseDir: string, env: NodeJS.ProcessEnv): SubstitutionResult {
  const issues: SubstitutionIssue[] = [];
  const unresolved = new Set<string>();
  const files: string[] = [];
  const read = new Map<string, FileSnapshot>();
  const wholeReferences: KeyPath[] = [];
  const resolved: SubstitutionResult['resolved'] = [];
  const written = new Map<string, string>();
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (typeof v === 'string') {
      if (!v.includes('${')) {
        if (isSecretPath(path) && MISTYPED_REFERENCE.test(v)) {
          issues.push({ path, message: 'looks like a mistyped ${env:NAME} or ${file:path}: as written, this text would be the secret, and anyone who reads the file could sign in as any user', missing: false });
        }
        return v;
      }
      let missing = false;
      const before = resolved.length;
      const out = v.replace(REF, (_m, kind: string, arg: string) => {
        const name = arg.trim();
        if (kind === 'env') {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
            issues.push({ path, message: `invalid environment variable name ${JSON.stringify(name)}`, missing: false });
            missing = true;
            return '';
          }
          const val = env[name];
          if (val === undefined) {
            issues.push({ path, message: `environment variable ${name} is not set`, missing: true });
            missing = true;
            return '';
          }
          resolved.push({ ref: `\${env:${name}}`, value: val });
          return val;
        }
        const file = resolve(baseDir, name);
        files.push(file);
        let snapshot = read.get(file);
        if (!snapshot) {
          snapshot = snapshotOf(file, MAX_REFERENCED_FILE_BYTES);
          read.set(file, snapshot);
        }
        if ('bytes' in snapshot) {
          const val = snapshot.bytes.toString('utf8').replace(/\r?\n$/, '');
          resolved.push({ ref: `\${file:${name}}`, value: val });
          return val;
        }
        const e = snapshot.error;
        // A pipe, a device or a huge file is a mistake in the config itself, wherever it runs: an error in lint too.
        if (e instanceof NotARegularFileError || e instanceof FileTooLargeError) {
          issues.push({ path, message: `cannot use ${name}: it ${e.message}; \${file:} reads a secret, key or certificate from a regular file`, missing: false });
          missing = true;
          return '';
        }
        issues.push({ path, message: `cannot read ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, missing: true });
        missing = true;
        return '';
      });
      if (/\$\{(?!env:|file:)[^}]*\}/.test(v)) {
        issues.push({ path, message: 'unknown reference: use ${env:NAME} or ${file:path}', missing: false });
      }
      // Without its }, a reference matched nothing and was kept as text: a session secret was the
      // text of the config file itself.
      if (/\$\{[^}]*$/.test(v)) issues.push({ path, message: 'a reference without its closing }: write ${env:NAME} or ${file:path} (as written, the text itself would be the value)', missing: false });
      if (/\$\{(?:env|file):[^}]*\}\}/.test(v)) issues.push({ path, message: 'a } right after a reference: it would end the value', missing: false });
      if (resolved.length > before) written.set(JSON.stringify(path), v);
      if (missing) unresolved.add(JSON.stringify(path));
      else if (/^\$\{(env|file):[^}]*\}$/.test(v)) wholeReferences.push(path);
      return out;
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, [...path, i]));
    // A !!binary value stays the bytes it is (validation names it); spread into an object it read as a mapping.
    if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) out[k] = walk(item, [...path, k]);
      return out;
    }
    return v;
  };
  return { value: walk(value, []), issues, unresolved, files, read, wholeReferences, resolved, written };
}

/**
 * A message with every resolved value in it (raw, or JSON-escaped as messages
 * quote values) replaced by its reference. Lint runs in CI on files anyone can
 * propose: "${file:/proc/self/environ} is not a valid URL" must not print the
 * environment into the build log, nor a reload print a secret into the logs.
 */
export function withoutResolvedValues(message: string, resolved: SubstitutionResult['resolved']): string {
  const needles: { text: string; ref: string }[] = [];
  for (const { ref, value } of resolved) {
    // shorter values would only blot out unrelated words; they are not secrets anyway
    if (value.length < 3) continue;
    needles.push({ text: value, ref });
    const escaped = JSON.stringify(value).slice(1, -1);
    if (escaped !== value) needles.push({ text: escaped, ref });
  }
  // Longest first: a shorter value replaced first (${env:HOME}'s /root) cuts the longer one that
  // holds it (${file:/proc/self/environ}'s HOME=/root), and the rest of that one was printed.
  needles.sort((a, b) => b.text.length - a.text.length);
  let out = message;
  for (const { text, ref } of needles) out = out.split(text).join(ref);
  return out;
}
