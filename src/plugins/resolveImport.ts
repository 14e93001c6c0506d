/**
 * Where `import()` from a module in a given folder finds a package's file: its `exports` read
 * with the ESM conditions. The gateway imports plugins, but resolved packages with
 * require.resolve, that is with the require conditions: an ESM-only package (`exports` with
 * only `import`) was "not found", and a dual package gave its CommonJS build. Node 20 has no
 * API for this from another folder: import.meta.resolve ignores its parent argument without
 * --experimental-import-meta-resolve (it resolves from this file, the gateway's own
 * node_modules), and module.findPackageJSON came in Node 22. So the lookup below follows
 * Node's ESM resolver (PACKAGE_RESOLVE, PACKAGE_EXPORTS_RESOLVE) for what a plugin entry
 * needs: a package name or a package folder, with an optional subpath.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep, isAbsolute } from 'node:path';

/** Node's conditions for import() (module-sync since Node 20.19, which the gateway requires). */
const IMPORT_CONDITIONS = new Set(['node', 'import', 'module-sync', 'default']);

export type ImportResolution =
  /** the file import() would load */
  | { file: string }
  /** the package is there and has `exports`, but none for this subpath and the import conditions */
  | { notExported: string }
  /** no `exports` to go by (or no such package here): the legacy main/index lookup applies */
  | undefined;

/** `specifier`: a bare package specifier (`name`, `@scope/name`, `name/sub/path`). */
export function resolvePackageImport(specifier: string, fromDir: string): ImportResolution {
  const m = /^((?:@[^/\\]+\/)?[^/\\@][^/\\]*)(\/.*)?$/.exec(specifier);
  if (!m || specifier.startsWith('node:')) return undefined;
  const [, name, rest] = m;
  // PACKAGE_SELF_RESOLVE: inside a package, its own name resolves through its own `exports`
  // (a plugin's repository linting its example config), before any node_modules.
  const own = ownPackage(fromDir);
  if (own && own.name === name && own.hasExports) return resolveInPackage(own.folder, rest ? `.${rest}` : '.', specifier);
  for (let dir = resolve(fromDir); ; dir = dirname(dir)) {
    if (!dir.endsWith(`${sep}node_modules`)) {
      const folder = join(dir, 'node_modules', name!);
      if (isDirectory(folder)) return resolveInPackage(folder, rest ? `.${rest}` : '.', specifier);
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** `subpath`: "." or "./x/y", as the package's `exports` keys are written. */
export function resolveInPackage(folder: string, subpath: string, specifier: string): ImportResolution {
  let exportsField: unknown;
  try {
    exportsField = (JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8')) as { exports?: unknown }).exports;
  } catch {
    return undefined;
  }
  if (exportsField === undefined || exportsField === null) return undefined;
  const target = exportTarget(exportsField, subpath);
  if (typeof target !== 'string') {
    const what = subpath === '.' ? 'no main entry' : `no entry for ${JSON.stringify(subpath)}`;
    return { notExported: `package ${JSON.stringify(specifier)} (${folder}) exports ${what} for import (conditions ${[...IMPORT_CONDITIONS].join(', ')})` };
  }
  const file = resolve(folder, target);
  // Node refuses a target outside the package ("../x") or into its node_modules.
  const inside = relative(folder, file);
  if (inside.startsWith('..') || isAbsolute(inside) || inside.split(sep).includes('node_modules')) {
    return { notExported: `package ${JSON.stringify(specifier)} (${folder}) exports ${JSON.stringify(target)}, a path outside the package` };
  }
  try {
    return { file: realpathSync(file) };
  } catch {
    // import() says it is missing, with Node's own message
    return { file };
  }
}

/** The target string for `subpath`, or null/undefined when there is none (PACKAGE_EXPORTS_RESOLVE). */
function exportTarget(exportsField: unknown, subpath: string): string | null | undefined {
  const keys = exportsField && typeof exportsField === 'object' && !Array.isArray(exportsField) ? Object.keys(exportsField) : [];
  // A string, an array or an object of conditions is the main entry alone.
  if (!keys.some((k) => k.startsWith('.'))) return subpath === '.' ? targetOf(exportsField, undefined) : undefined;
  const map = exportsField as Record<string, unknown>;
  if (Object.hasOwn(map, subpath) && !subpath.includes('*')) return targetOf(map[subpath], undefined);
  // Patterns ("./features/*.js"): the one with the longest prefix before the "*" wins.
  let best: { key: string; match: string } | undefined;
  for (const key of keys) {
    const star = key.indexOf('*');
    if (star < 0 || key.indexOf('*', star + 1) >= 0) continue;
    const prefix = key.slice(0, star);
    const suffix = key.slice(star + 1);
    if (!subpath.startsWith(prefix) || subpath === prefix || subpath.length < key.length || !subpath.endsWith(suffix)) continue;
    if (!best || patternFirst(key, best.key)) best = { key, match: subpath.slice(prefix.length, subpath.length - suffix.length) };
  }
  return best ? targetOf(map[best.key], best.match) : undefined;
}

/** PATTERN_KEY_COMPARE: a longer prefix first, then a longer key. */
function patternFirst(a: string, b: string): boolean {
  const pa = a.indexOf('*');
  const pb = b.indexOf('*');
  return pa !== pb ? pa > pb : a.length > b.length;
}

/** PACKAGE_TARGET_RESOLVE: conditions are tried in the package's own order. */
function targetOf(target: unknown, match: string | undefined): string | null | undefined {
  if (typeof target === 'string') {
    if (!target.startsWith('./')) return undefined;
    return match === undefined ? target : target.replaceAll('*', match);
  }
  if (Array.isArray(target)) {
    // Node tries the next item after an excluded one (null) too, and answers null when the last it could use was
    if (target.length === 0) return null;
    let last: null | undefined;
    for (const t of target) {
      const r = targetOf(t, match);
      if (r === null) last = null;
      else if (r !== undefined) return r;
    }
    return last;
  }
  if (target && typeof target === 'object') {
    for (const [condition, value] of Object.entries(target)) {
      if (!IMPORT_CONDITIONS.has(condition)) continue;
      const r = targetOf(value, match);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  return target === null ? null : undefined;
}

/** The package whose scope `dir` is in: the nearest package.json above it (LOOKUP_PACKAGE_SCOPE). */
function ownPackage(dir: string): { folder: string; name?: string; hasExports: boolean } | undefined {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (d.endsWith(`${sep}node_modules`)) return undefined;
    let text: string | undefined;
    try {
      text = readFileSync(join(d, 'package.json'), 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        const pkg = JSON.parse(text) as { name?: unknown; exports?: unknown };
        return { folder: d, name: typeof pkg.name === 'string' ? pkg.name : undefined, hasExports: pkg.exports !== undefined && pkg.exports !== null };
      } catch {
        return undefined;
      }
    }
    if (dirname(d) === d) return undefined;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
