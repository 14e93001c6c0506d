/**
 * Config -> Generation: the route table and one pipeline per app. All or
 * nothing: if any app fails to compile, the whole config is rejected and the
 * live generation keeps serving.
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/load.js';
import { CidrSet } from '../config/net.js';
import type { AppConfig } from '../config/schema.js';
import { DrawbridgeError } from '../errors.js';
import { Router, hostPatternOf, prefixOf } from '../gateway/router.js';
import { DirectUpstream, type Upstream } from '../gateway/upstream.js';
import type { LoadedPlugin } from '../plugins/registry.js';
import { conditionalAccessOptionsFor } from '../plugins/access/conditionalAccess.js';
import { stripNamesFor } from '../plugins/headers/identityHeaders.js';
import { gatewayOwned, ownedHeaders } from './gatewayOwned.js';
import { Generation, type CompiledApp } from './generation.js';
import { STAGE_KINDS, type Plugin, type PluginContext, type Stage } from './stage.js';

export const BACKEND_TIMEOUT_DEFAULT_MS = 85_000;
export const BACKEND_TIMEOUT_LONG_MS = 180_000;

export interface CompileDeps {
  logger: Logger;
  plugins: readonly LoadedPlugin[];
  configDir: string;
  /** builds the upstream for an app; the default connects directly */
  upstreamFor?: (app: AppConfig, internalUrl: URL, configDir: string) => Upstream;
  /** extra stages per app from subsystems that are not plugins (identity, policies) */
  extraStages?: (app: AppConfig, config: Config) => Promise<Stage[]> | Stage[];
  now?: () => number;
  /** the state folder in use (the one the gateway started with); default: the config's gateway.stateDir */
  stateDir?: string;
}

export class CompileError extends DrawbridgeError {
  constructor(app: string, cause: Error) {
    super('ERR_CONFIG_COMPILE', `app ${app}: ${cause.message}`, { app });
  }
}

let nextGenerationId = 1;

export function timeoutOf(v: string | undefined): number {
  if (v === undefined || v === 'default') return BACKEND_TIMEOUT_DEFAULT_MS;
  if (v === 'long') return BACKEND_TIMEOUT_LONG_MS;
  return parseDuration(v) ?? BACKEND_TIMEOUT_DEFAULT_MS;
}

export async function compile(config: Config, hash: string, deps: CompileDeps): Promise<Generation> {
  const byName = new Map<string, Plugin<any>>(deps.plugins.map((l) => [l.plugin.name, l.plugin]));
  const router = new Router<CompiledApp>();
  const apps = new Map<string, CompiledApp>();
  const staged: { app: AppConfig; stages: Stage[] }[] = [];
  const built: CompiledApp[] = [];
  const stateDir = deps.stateDir ?? resolve(deps.configDir, config.gateway.stateDir ?? './state');
  const failed = (app: AppConfig, e: unknown) => (e instanceof DrawbridgeError ? e : new CompileError(app.name, e as Error));
  try {
    for (const app of config.apps as AppConfig[]) {
      try {
        staged.push({ app, stages: await stagesOf(app, config, deps, byName, stateDir) });
      } catch (e) {
        throw failed(app, e);
      }
    }
    // Known only once every app's stages exist: what one app's stage strips, every app drops.
    const owned = ownedHeaders(config, staged.flatMap(({ stages }) => stages.flatMap((s) => s.stripHeaders ?? [])));
    for (const { app: appCfg, stages } of staged) {
      try {
        const app = finishApp(appCfg, config, deps, stages, owned);
        built.push(app);
        apps.set(app.name, app);
        const ext = new URL(appCfg.externalUrl.replace('://*.', '://wildcard---.'));
        router.add(hostPatternOf(ext).replace(/^wildcard---\./, '*.'), prefixOf(ext), app);
      } catch (e) {
        throw failed(appCfg, e);
      }
    }
  } catch (e) {
    // Nothing of a half-built generation may stay open.
    for (const { stages } of staged) for (const s of stages) await Promise.resolve(s.dispose?.()).catch(() => undefined);
    for (const app of built) await app.upstream.close().catch(() => undefined);
    throw e;
  }
  const trusted = new CidrSet(config.gateway.trustedProxies ?? []);
  return new Generation(nextGenerationId++, config, router, apps, trusted, hash, deps.logger);
}

async function stagesOf(app: AppConfig, config: Config, deps: CompileDeps, plugins: Map<string, Plugin<any>>, stateDir: string): Promise<Stage[]> {
  const ctx: PluginContext = {
    logger: deps.logger.child({ app: app.name }),
    now: deps.now ?? Date.now,
    app: { name: app.name, externalUrl: app.externalUrl, internalUrl: app.internalUrl, connectorGroup: app.connectorGroup },
    configDir: deps.configDir,
    stateDir,
  };
  const use = async (name: string, options: unknown): Promise<Stage> => {
    const plugin = plugins.get(name);
    if (!plugin) throw new Error(`plugin ${name} is not loaded`);
    return plugin.create(options as never, ctx);
  };

  const stages: Stage[] = [];
  const preAuth = app.preAuth ?? 'oidc';
  if (preAuth === 'passthrough') stages.push(await use('passthrough', {}));
  if (preAuth === 'oidc') stages.push(await use('oidc', { config, app }));
  if (app.assignment) stages.push(await use('assignment', app.assignment));
  if (deps.extraStages) stages.push(...(await deps.extraStages(app, config)));
  const policies = conditionalAccessOptionsFor(app, config);
  if (policies) stages.push(await use('conditional-access', policies));
  if (app.headers?.identity) stages.push(await use('identity-headers', { map: { ...app.headers.identity } }));
  if (app.headers?.assertion) stages.push(await use('identity-assertion', { header: app.headers.assertion, issuer: config.gateway.publicUrl }));
  if (app.sso) stages.push(await use(app.sso.plugin, app.sso.options ?? {}));
  if (app.headers?.forwarded !== false) stages.push(await use('forwarded-headers', { trustedProxies: [...(config.gateway.trustedProxies ?? [])] }));
  // A pipeline without its authentication stage must never be built: fail closed.
  if (!stages.some((s) => s.kind === 'preauth')) throw new Error(`no pre-authentication stage for preAuth ${preAuth}`);
  stages.sort((a, b) => STAGE_KINDS.indexOf(a.kind) - STAGE_KINDS.indexOf(b.kind));
  return stages;
}

function finishApp(app: AppConfig, config: Config, deps: CompileDeps, stages: Stage[], owned: ReadonlySet<string>): CompiledApp {
  const internalUrl = new URL(app.internalUrl);
  const external = new URL(app.externalUrl.replace('://*.', '://wildcard---.'));
  const preAuth = app.preAuth ?? 'oidc';
  const strip = new Set<string>(owned);
  // A name written with `_` or `.` also covers its dashed spelling: the edge folds a client's
  // `_`/`.` to `-` before looking a name up, and a CGI-style backend reads all three as one.
  // (This app's own list also holds what ownedHeaders leaves to each app, such as Authorization.)
  for (const h of stripNamesFor(stages.flatMap((s) => s.stripHeaders ?? []))) strip.add(h);

  const upstream = deps.upstreamFor ? deps.upstreamFor(app, internalUrl, deps.configDir) : new DirectUpstream(internalUrl, app.backend?.tls ?? {}, (p) => resolve(deps.configDir, p));
  return Object.freeze({
    name: app.name,
    externalUrl: app.externalUrl,
    externalOrigin: external.origin.replace('wildcard---.', '*.'),
    externalPrefix: prefixOf(external),
    internalUrl,
    internalPrefix: prefixOf(internalUrl),
    preAuth,
    stages: Object.freeze(stages),
    stripHeaders: strip,
    isGatewayCookie: gatewayOwned(config).isCookie,
    timeoutMs: timeoutOf(app.backendTimeout),
    websockets: app.websockets === true,
    translateHeaders: app.translateUrls?.headers !== false,
    translateBody: app.translateUrls?.body === true,
    upstream,
  });
}
