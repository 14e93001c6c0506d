/**
 * Plugin registry: the built-in modes plus those listed under `plugins:`.
 * A plugin that cannot be loaded or is malformed fails the config.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { compileSchema } from '../config/validate.js';
import { PLUGIN_API_VERSION, STAGE_KINDS, type Plugin } from '../pipeline/stage.js';
import { PluginTimeoutError, pluginDeadlineMs, withDeadline } from './deadline.js';
import { resolveInPackage, resolvePackageImport } from './resolveImport.js';
import { passthrough } from './preauth/passthrough.js';
import { forwardedHeaders } from './headers/forwarded.js';
import { oidcPreauth } from './preauth/oidc.js';
import { assignment } from './access/assignment.js';
import { conditionalAccess } from './access/conditionalAccess.js';
import { identityHeaders } from './headers/identityHeaders.js';
import { identityAssertion } from './headers/assertion.js';

export const BUILTIN_PLUGINS: readonly Plugin<any>[] = [passthrough, oidcPreauth, assignment, conditionalAccess, forwardedHeaders, identityHeaders, identityAssertion];

export interface LoadedPlugin {
  plugin: Plugin<any>;
  /** the specifier in `plugins:` it came from; undefined for built-ins */
  source?: string;
  file?: string;
}

export interface PluginLoadFailure {
  index: number;
  specifier: string;
  message: string;
  /** the module was not found (in lint a warning: the plugin may be installed only where the gateway runs) */
  notFound: boolean;
  /** the name the plugin probably has, so references to it are not reported twice */
  guessedName: string;
}

/** What a plugin file may be called: anything else is not imported (Node would run an extensionless file as CommonJS). */
const MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs'];

export interface LoadOptions {
  /** how long one module's import may take (0: no limit); default from DRAWBRIDGE_PLUGIN_TIMEOUT */
  timeoutMs?: number;
}

export async function loadPlugins(specifiers: readonly string[], configDir: string, opts: LoadOptions = {}): Promise<{ loaded: LoadedPlugin[]; failures: PluginLoadFailure[] }> {
  const timeoutMs = opts.timeoutMs ?? pluginDeadlineMs();
  const loaded: LoadedPlugin[] = BUILTIN_PLUGINS.map((plugin) => ({ plugin }));
  const failures: PluginLoadFailure[] = [];
  const req = createRequire(resolve(configDir, 'gateway.config.yaml'));
  for (const [index, specifier] of specifiers.entries()) {
    let guessedName = basename(specifier, extname(specifier));
    const fail = (message: string, notFound = false) => failures.push({ index, specifier, message, notFound, guessedName });
    const local = specifier.startsWith('.') || isAbsolute(specifier);
    const path = local ? resolve(configDir, specifier) : undefined;
    const stat = path === undefined ? undefined : statOf(path);
    if (path !== undefined && !stat?.isDirectory() && !MODULE_EXTENSIONS.includes(extname(path))) {
      // A secret file (./db_password) would be evaluated and its first word printed as a ReferenceError.
      if (extname(path) || stat) {
        fail(`plugin ${JSON.stringify(specifier)} is not a JavaScript module: a plugin path must name a .js, .mjs or .cjs file (or a package folder)`);
        continue;
      }
    }
    const found = resolveEntry(specifier, path, stat, configDir, req);
    if ('problem' in found) {
      fail(found.problem, found.notFound);
      continue;
    }
    const { file } = found;
    // A package's main, a package subpath or a symlink may still lead to something that is not JavaScript.
    if (!MODULE_EXTENSIONS.includes(extname(file))) {
      fail(`plugin ${JSON.stringify(specifier)} is not a JavaScript module: it resolves to ${file}, and a plugin must be a .js, .mjs or .cjs file`);
      continue;
    }
    let mod: Record<string, unknown>;
    try {
      mod = await withDeadline(import(moduleUrl(file, specifier)), timeoutMs, `importing ${file}`);
    } catch (e) {
      fail(`plugin ${JSON.stringify(specifier)} failed to load: ${e instanceof PluginTimeoutError ? e.message : describeLoadError(e, file)}`);
      continue;
    }
    const { exported, what } = exportedPlugins(mod);
    const list: unknown[] = Array.isArray(exported) ? exported : [exported];
    if (!list.length || exported === undefined) {
      fail(`plugin ${JSON.stringify(specifier)} failed to load: the module exports no plugin (export default a plugin object)`);
      continue;
    }
    const accepted: LoadedPlugin[] = [];
    for (const [i, candidate] of list.entries()) {
      const name = (candidate as { name?: unknown } | null)?.name;
      if (typeof name === 'string' && PLUGIN_NAME.test(name)) guessedName = name;
      const problem = checkShape(candidate, specifier, Array.isArray(exported) ? `entry ${i} of ${what}` : what);
      if (problem) {
        fail(problem);
        break;
      }
      const plugin = candidate as Plugin<any>;
      const clash = [...loaded, ...accepted].find((l) => l.plugin.name === plugin.name);
      if (clash) {
        fail(`plugin ${JSON.stringify(specifier)} failed to load: plugin name ${JSON.stringify(plugin.name)} is already taken${clash.source ? ` by ${clash.source}` : ' by a built-in'}`);
        break;
      }
      accepted.push({ plugin, source: specifier, file });
    }
    if (accepted.length === list.length) loaded.push(...accepted);
  }
  return { loaded, failures };
}

/**
 * The file a plugins: entry names, as import() finds it: a package's `exports` read with the
 * import conditions (resolveImport.ts). require's lookup only where they say nothing: a
 * local file, a package without `exports` (its main, index.js), or one that exports only
 * `require` (a CommonJS plugin, which import() loads from that file as well).
 */
function resolveEntry(specifier: string, path: string | undefined, stat: Stats | undefined, configDir: string, req: NodeJS.Require): { file: string } | { problem: string; notFound: boolean } {
  const esm = path === undefined ? resolvePackageImport(specifier, configDir) : stat?.isDirectory() ? resolveInPackage(path, '.', specifier) : undefined;
  if (esm && 'file' in esm) return esm;
  try {
    return { file: req.resolve(path ?? specifier) };
  } catch (e) {
    // Installed but unusable is an error in lint too; only "not there" may be a deployment difference.
    if (esm) return { problem: `plugin ${JSON.stringify(specifier)} failed to load: ${esm.notExported}`, notFound: false };
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') return { problem: `plugin ${JSON.stringify(specifier)} failed to load: ${describeLoadError(e, path ?? specifier)}`, notFound: false };
    return { problem: `plugin ${JSON.stringify(specifier)} not found (relative paths are resolved from ${configDir})`, notFound: true };
  }
}

/**
 * What the module offers as its plugin (or list of plugins): its default export, else an export
 * named `plugin` or `plugins`. import() gives a CommonJS module's whole `exports` object as its
 * default, and TypeScript's and Babel's CommonJS output for `export default plugin` is
 * `exports.default = plugin` marked `__esModule`: that object is read as the module itself, as
 * those compilers' own interop does.
 */
function exportedPlugins(mod: Record<string, unknown>): { exported: unknown; what: string } {
  const d = mod.default as Record<string, unknown> | null | undefined;
  const ns = d && typeof d === 'object' && !Array.isArray(d) && d.__esModule ? d : mod;
  for (const key of ['default', 'plugin', 'plugins']) {
    if (ns[key] !== undefined) return { exported: ns[key], what: key === 'default' ? "the module's default export" : `the module's export ${JSON.stringify(key)}` };
  }
  return { exported: undefined, what: '' };
}

/**
 * A load error's message may quote the file: V8 says "hunter2 is not defined" or
 * "Unexpected identifier 'hunter2'" for a file that is not JavaScript, and lint prints
 * its problems into CI logs and annotations. So only the error's class is reported,
 * and `node FILE` shows the rest to whoever may read the file. Node's own coded errors
 * are the exception: their messages are built from specifiers and paths (a dependency
 * the plugin imports that is not installed), and that is what its author needs to see.
 */
function describeLoadError(e: unknown, file: string): string {
  const name = e instanceof Error && /^[A-Za-z]{1,40}$/.test(e.name) ? e.name : 'an exception';
  const code = (e as { code?: unknown } | null)?.code;
  const coded = typeof code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(code);
  if (e instanceof Error && typeof code === 'string' && NODE_LOAD_ERRORS.has(code)) return `${name} [${code}] in ${file}: ${e.message.split('\n')[0]!.slice(0, 300)}`;
  return `${name}${coded ? ` [${code}]` : ''} in ${file} (run \`node ${file}\` for details)`;
}

/** Node's resolution errors, whose messages name only modules and paths */
const NODE_LOAD_ERRORS = new Set(['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND', 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'ERR_UNSUPPORTED_DIR_IMPORT', 'ERR_REQUIRE_ESM', 'ERR_UNKNOWN_FILE_EXTENSION']);

/** what is at `path`, or undefined when nothing (readable) is */
function statOf(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Node keeps an ES module for good once imported, so an edited plugin file would
 * reload "successfully" with its old code (and a broken one would only fail at the
 * next start). A local file is imported under its content's hash: an edit loads the
 * new code or fails the reload, and an unchanged file stays the module already
 * loaded. Only the file `plugins:` names is loaded again: a module it imports keeps its first
 * version. Plugins from packages change with an install, which needs a restart.
 */
function moduleUrl(file: string, specifier: string): string {
  const url = pathToFileURL(file).href;
  if (!(specifier.startsWith('.') || isAbsolute(specifier))) return url;
  // A CommonJS file is evaluated through require's cache, whatever the URL: an edit reloaded
  // "successfully" with the old code (a broken edit too, which then failed the next start).
  // Out of that cache, the new URL evaluates the file again. (An ES module is not in it.)
  delete createRequire(file).cache[file];
  try {
    return `${url}?v=${createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16)}`;
  } catch {
    return url;
  }
}

const PLUGIN_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/** the members a plugin object has; an object with none of them is something else (a module namespace, a factory's options) */
const PLUGIN_KEYS = ['name', 'kind', 'apiVersion', 'optionsSchema', 'create'];

/** `what`: where the candidate came from ("the module's default export") */
function checkShape(p: unknown, specifier: string, what: string): string | undefined {
  const failed = `plugin ${JSON.stringify(specifier)} failed to load`;
  if (!p || typeof p !== 'object') return `${failed}: ${what} is not a plugin object (it is ${p === null ? 'null' : typeof p === 'function' ? 'a function: export the plugin object itself' : `a ${typeof p}`})`;
  const o = p as Record<string, unknown>;
  if (!PLUGIN_KEYS.some((k) => k in o)) {
    const keys = Object.keys(o);
    const shown = keys.slice(0, 8).map((k) => JSON.stringify(k.slice(0, 40)));
    return `${failed}: ${what} is not a plugin object (${keys.length ? `it has the keys ${shown.join(', ')}${keys.length > shown.length ? ', ...' : ''}` : 'it has no keys'}; a plugin has ${PLUGIN_KEYS.join(', ')})`;
  }
  if (typeof o.name !== 'string' || !PLUGIN_NAME.test(o.name)) return `${failed}: plugin.name must be a lower-case name`;
  if (!STAGE_KINDS.includes(o.kind as never)) return `${failed}: plugin ${o.name}: kind must be one of ${STAGE_KINDS.join(', ')}`;
  if (o.apiVersion !== PLUGIN_API_VERSION) return `${failed}: plugin ${o.name}: apiVersion ${String(o.apiVersion)} is not supported (this gateway speaks ${PLUGIN_API_VERSION})`;
  if (!o.optionsSchema || typeof o.optionsSchema !== 'object') return `${failed}: plugin ${o.name}: optionsSchema must be a JSON Schema object`;
  if (typeof o.create !== 'function') return `${failed}: plugin ${o.name}: create must be a function`;
  // Compiled here, where the problem can be pinned on the plugins: entry: lint would
  // otherwise compile it first when checking an app's options, with no position.
  try {
    compileSchema(o.optionsSchema);
  } catch (e) {
    return `plugin ${JSON.stringify(specifier)}: optionsSchema is not a valid JSON Schema: ${(e as Error).message.replace(/^schema is invalid: /, '')}`;
  }
  return undefined;
}
