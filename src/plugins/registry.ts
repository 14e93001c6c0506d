/**
 * Plugin registry: the built-in modes plus those listed under `plugins:`.
 * A plugin that cannot be loaded or is malformed fails the config.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, extname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PLUGIN_API_VERSION, STAGE_KINDS, type Plugin } from '../pipeline/stage.js';
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

export async function loadPlugins(specifiers: readonly string[], configDir: string): Promise<{ loaded: LoadedPlugin[]; failures: PluginLoadFailure[] }> {
  const loaded: LoadedPlugin[] = BUILTIN_PLUGINS.map((plugin) => ({ plugin }));
  const failures: PluginLoadFailure[] = [];
  const req = createRequire(resolve(configDir, 'gateway.config.yaml'));
  for (const [index, specifier] of specifiers.entries()) {
    const guessedName = basename(specifier, extname(specifier));
    let file: string;
    try {
      const local = specifier.startsWith('.') || isAbsolute(specifier);
      file = req.resolve(local ? resolve(configDir, specifier) : specifier);
    } catch {
      failures.push({ index, specifier, message: `plugin ${JSON.stringify(specifier)} not found (relative paths are resolved from ${configDir})`, notFound: true, guessedName });
      continue;
    }
    try {
      const mod = await import(moduleUrl(file, specifier));
      const exported = mod.default ?? mod.plugin ?? mod.plugins;
      const list: unknown[] = Array.isArray(exported) ? exported : [exported];
      if (!list.length || exported === undefined) throw new Error('the module exports no plugin (export default a plugin object)');
      for (const candidate of list) {
        const problem = checkShape(candidate);
        if (problem) throw new Error(problem);
        const plugin = candidate as Plugin<any>;
        const clash = loaded.find((l) => l.plugin.name === plugin.name);
        if (clash) throw new Error(`plugin name ${JSON.stringify(plugin.name)} is already taken${clash.source ? ` by ${clash.source}` : ' by a built-in'}`);
        loaded.push({ plugin, source: specifier, file });
      }
    } catch (e) {
      failures.push({ index, specifier, message: `plugin ${JSON.stringify(specifier)} failed to load: ${(e as Error).message}`, notFound: false, guessedName });
    }
  }
  return { loaded, failures };
}

/**
 * Node keeps an ES module for good once imported, so an edited plugin file would
 * reload "successfully" with its old code (and a broken one would only fail at the
 * next start). A local file is imported under its content's hash: an edit loads the
 * new code or fails the reload, and an unchanged file stays the module already
 * loaded. Plugins from packages change with an install, which needs a restart.
 */
function moduleUrl(file: string, specifier: string): string {
  const url = pathToFileURL(file).href;
  if (!(specifier.startsWith('.') || isAbsolute(specifier))) return url;
  try {
    return `${url}?v=${createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16)}`;
  } catch {
    return url;
  }
}

function checkShape(p: unknown): string | undefined {
  if (!p || typeof p !== 'object') return 'a plugin must be an object';
  const o = p as Record<string, unknown>;
  if (typeof o.name !== 'string' || !/^[a-z0-9][a-z0-9._-]*$/.test(o.name)) return 'plugin.name must be a lower-case name';
  if (!STAGE_KINDS.includes(o.kind as never)) return `plugin ${o.name}: kind must be one of ${STAGE_KINDS.join(', ')}`;
  if (o.apiVersion !== PLUGIN_API_VERSION) return `plugin ${o.name}: apiVersion ${String(o.apiVersion)} is not supported (this gateway speaks ${PLUGIN_API_VERSION})`;
  if (!o.optionsSchema || typeof o.optionsSchema !== 'object') return `plugin ${o.name}: optionsSchema must be a JSON Schema object`;
  if (typeof o.create !== 'function') return `plugin ${o.name}: create must be a function`;
  return undefined;
}
