/**
 * Config -> Generation: the route table and one pipeline per app. All or
 * nothing: if any app fails to compile, the whole config is rejected and the
 * live generation keeps serving.
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseDuration } from '../config/duration.js';
import type { Config, SourcePosition } from '../config/load.js';
import { formatPath, type KeyPath } from '../config/source.js';
import { CidrSet } from '../config/net.js';
import { StateFileError } from '../config/stateFile.js';
import { HEADER_NAME_PATTERN, type AppConfig } from '../config/schema.js';
import { DrawbridgeError, formatProblem } from '../errors.js';
import { EXCHANGE_HEADERS } from '../gateway/headers.js';
import { Router, externalUrlOf, prefixOf, wildcardHostOf } from '../gateway/router.js';
import { PLUGIN_REDACT_PATHS } from '../observability/logger.js';
import { CONNECT_TIMEOUT_MS, DirectUpstream, type Upstream } from '../gateway/upstream.js';
import type { LoadedPlugin } from '../plugins/registry.js';
import { PluginTimeoutError, pluginDeadlineMs, withDeadline } from '../plugins/deadline.js';
import { conditionalAccessOptionsFor } from '../plugins/access/conditionalAccess.js';
import { dashedName, stripNamesFor } from '../plugins/headers/identityHeaders.js';
import { routesComplete } from '../identity/portal.js';
import { gatewayOwned, identityHeaderNames, ownedHeaders } from './gatewayOwned.js';
import { Generation, disposeStages, type CompiledApp } from './generation.js';
import { STAGE_KINDS, type Plugin, type PluginContext, type Stage, type StageKind } from './stage.js';

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
  /** file:line:col of a key path (the loader's), so a stage that cannot be built is reported where the app asks for it */
  locate?: (path: KeyPath) => SourcePosition;
  /** how long a plugin's create(), and its stage's dispose(), may take (0: no limit); default from DRAWBRIDGE_PLUGIN_TIMEOUT */
  pluginTimeoutMs?: number;
}

/** Where in the file a failure belongs: the key of the app that asked for the stage. */
export interface CompileErrorLocation {
  path: KeyPath;
  position: SourcePosition;
}

export class CompileError extends DrawbridgeError {
  constructor(app: string, cause: Error, at?: CompileErrorLocation) {
    const message = `app ${app}: ${cause.message}`;
    const path = at ? formatPath(at.path) : undefined;
    super('ERR_CONFIG_COMPILE', at ? formatProblem({ severity: 'error', message, path: path!, ...at.position }) : message, { app, path, ...at?.position });
  }
}

let nextGenerationId = 1;

export function timeoutOf(v: string | undefined): number {
  if (v === undefined || v === 'default') return BACKEND_TIMEOUT_DEFAULT_MS;
  if (v === 'long') return BACKEND_TIMEOUT_LONG_MS;
  return parseDuration(v) ?? BACKEND_TIMEOUT_DEFAULT_MS;
}

/** The gateway's own connection to an app without a connector group; its connect, TLS handshake included, is bounded by backendTimeout too. */
export function directUpstream(app: AppConfig, internalUrl: URL, configDir: string): DirectUpstream {
  return new DirectUpstream(internalUrl, app.backend?.tls ?? {}, (p) => resolve(configDir, p), Math.min(timeoutOf(app.backendTimeout), CONNECT_TIMEOUT_MS));
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
    for (const [index, app] of (config.apps as AppConfig[]).entries()) {
      try {
        staged.push({ app, stages: await stagesOf(app, index, config, deps, byName, stateDir) });
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
        const ext = externalUrlOf(appCfg.externalUrl);
        router.add(wildcardHostOf(ext), prefixOf(ext), app);
      } catch (e) {
        throw failed(appCfg, e);
      }
    }
    // once every app is routed: an app published at publicUrl's address takes it from the portal
    routesComplete(config, router, { now: deps.now ?? Date.now, stateDir, logger: deps.logger });
  } catch (e) {
    // Nothing of a half-built generation may stay open.
    await Promise.allSettled([
      disposeStages(
        staged.flatMap(({ app, stages }) => stages.map((stage) => ({ app: app.name, stage }))),
        deps.logger,
        deps.pluginTimeoutMs ?? pluginDeadlineMs(),
      ),
      ...built.map((app) => app.upstream.close()),
    ]);
    throw e;
  }
  const trusted = new CidrSet(config.gateway.trustedProxies ?? []);
  return new Generation(nextGenerationId++, config, router, apps, trusted, hash, deps.logger, deps.pluginTimeoutMs ?? pluginDeadlineMs());
}

async function stagesOf(app: AppConfig, index: number, config: Config, deps: CompileDeps, plugins: Map<string, Plugin<any>>, stateDir: string): Promise<Stage[]> {
  const ctx: PluginContext = {
    logger: deps.logger.child({ app: app.name }, { redact: { paths: PLUGIN_REDACT_PATHS, censor: '[redacted]' } }),
    now: deps.now ?? Date.now,
    app: { name: app.name, externalUrl: app.externalUrl, internalUrl: app.internalUrl, connectorGroup: app.connectorGroup },
    configDir: deps.configDir,
    stateDir,
  };
  const timeoutMs = deps.pluginTimeoutMs ?? pluginDeadlineMs();
  /** `key`: the app's key that asks for this plugin, where a failure to build its stage is reported */
  const use = async (name: string, options: unknown, key: KeyPath): Promise<Stage> => {
    try {
      const plugin = plugins.get(name);
      if (!plugin) throw new Error(`plugin ${name} is not loaded`);
      let stage: unknown;
      try {
        // A create() that never settles would hold the start or the reload (and every reload after it) for good.
        const created = Promise.resolve().then(() => plugin.create(options as never, ctx));
        stage = await withDeadline(created, timeoutMs, `its create()`, (late) => {
          ctx.logger.warn({ plugin: name }, `plugin ${name}: create() finished after its deadline; that stage is disposed`);
          void disposeStages([{ app: app.name, stage: late }], deps.logger, timeoutMs);
        });
      } catch (e) {
        // a file in stateDir the gateway cannot use is not the config's fault: it is said as it is
        if (e instanceof StateFileError) throw e;
        if (e instanceof PluginTimeoutError) throw new Error(`plugin ${name} did not build its stage: ${e.message}`);
        throw new Error(`plugin ${name} refused to build its stage: ${(e as Error).message}`);
      }
      const problem = stageProblem(stage, plugin.kind);
      if (problem) {
        // Refused, yet built: what create() opened (timers, sockets) is released here, or each
        // attempt leaked it (the 5 s poll rebuilds a broken file again and again), and a failed start never ended.
        await disposeStages([{ app: app.name, stage: stage as Stage }], deps.logger, timeoutMs);
        throw new Error(`plugin ${name}: ${problem}`);
      }
      return stage as Stage;
    } catch (e) {
      if (e instanceof StateFileError) throw e;
      const path = ['apps', index, ...key];
      throw new CompileError(app.name, e as Error, deps.locate && { path, position: deps.locate(path) });
    }
  };

  const stages: Stage[] = [];
  try {
    const preAuth = app.preAuth ?? 'oidc';
    if (preAuth === 'passthrough') stages.push(await use('passthrough', {}, ['preAuth']));
    if (preAuth === 'oidc') stages.push(await use('oidc', { config, app }, ['preAuth']));
    if (app.assignment) stages.push(await use('assignment', app.assignment, ['assignment']));
    if (deps.extraStages) stages.push(...(await deps.extraStages(app, config)));
    const policies = conditionalAccessOptionsFor(app, config);
    if (policies) stages.push(await use('conditional-access', policies, ['conditionalAccess']));
    if (app.headers?.identity) stages.push(await use('identity-headers', { map: { ...app.headers.identity } }, ['headers', 'identity']));
    if (app.headers?.assertion) stages.push(await use('identity-assertion', { header: app.headers.assertion, issuer: config.gateway.publicUrl }, ['headers', 'assertion']));
    if (app.sso) stages.push(await use(app.sso.plugin, app.sso.options ?? {}, ['sso', 'plugin']));
    if (app.headers?.forwarded !== false) stages.push(await use('forwarded-headers', { trustedProxies: [...(config.gateway.trustedProxies ?? [])] }, ['headers', 'forwarded']));
    // A pipeline without its authentication stage must never be built: fail closed.
    if (!stages.some((s) => s.kind === 'preauth')) throw new Error(`no pre-authentication stage for preAuth ${preAuth}`);
    // The sort below puts an unknown kind (indexOf -1) before preauth, where it would see unauthenticated requests.
    const unknown = stages.find((s) => !STAGE_KINDS.includes(s.kind));
    if (unknown) throw new Error(`stage ${unknown.name} has kind ${JSON.stringify(unknown.kind)}, not one of ${STAGE_KINDS.join(', ')}`);
  } catch (e) {
    // compile() disposes the stages of the apps already built; this app's are only here.
    await disposeStages(stages.map((stage) => ({ app: app.name, stage })), deps.logger, timeoutMs);
    throw e;
  }
  stages.sort((a, b) => STAGE_KINDS.indexOf(a.kind) - STAGE_KINDS.indexOf(b.kind));
  return stages;
}

function finishApp(app: AppConfig, config: Config, deps: CompileDeps, stages: Stage[], owned: ReadonlySet<string>): CompiledApp {
  const internalUrl = new URL(app.internalUrl);
  const external = externalUrlOf(app.externalUrl);
  const preAuth = app.preAuth ?? 'oidc';
  const strip = new Set<string>(owned);
  // A name written with `_` or `.` also covers its dashed spelling: the edge folds a client's
  // `_`/`.` to `-` before looking a name up, and a CGI-style backend reads all three as one.
  // (This app's own list also holds what ownedHeaders leaves to each app, such as Authorization.)
  for (const h of stripNamesFor(stages.flatMap((s) => s.stripHeaders ?? []))) strip.add(h);

  const upstream = deps.upstreamFor ? deps.upstreamFor(app, internalUrl, deps.configDir) : directUpstream(app, internalUrl, deps.configDir);
  return Object.freeze({
    name: app.name,
    externalUrl: app.externalUrl,
    externalOrigin: external.origin.replace('wildcard---.', '*.'),
    externalPrefix: prefixOf(external),
    internalUrl,
    internalPrefix: prefixOf(internalUrl),
    internalHost: internalUrl.host,
    internalBase: internalUrl.origin + prefixOf(internalUrl),
    preAuth,
    stages: Object.freeze(stages),
    stripHeaders: strip,
    identityHeaders: new Set(identityHeaderNames(app).map(dashedName)),
    isGatewayCookie: gatewayOwned(config).isCookie,
    timeoutMs: timeoutOf(app.backendTimeout),
    websockets: app.websockets === true,
    translateHeaders: app.translateUrls?.headers !== false,
    translateBody: app.translateUrls?.body === true,
    upstream,
  });
}

/** the config's own rule for a header name (an RFC 9110 token) */
const HEADER_NAME = new RegExp(HEADER_NAME_PATTERN);

/**
 * What is wrong with what a plugin's create() returned, or undefined. Its place in the pipeline
 * comes from its kind, so a kind other than the plugin's (a typo such as "Sso" sorts before
 * preauth) would run it on requests nobody has authenticated yet.
 */
function stageProblem(stage: unknown, kind: StageKind): string | undefined {
  if (!stage || typeof stage !== 'object') return `create() returned ${stage === null ? 'null' : typeof stage}, not a stage`;
  const s = stage as Record<string, unknown>;
  if (s.kind !== kind) return `its stage has kind ${JSON.stringify(s.kind)}, but the plugin's kind is ${JSON.stringify(kind)} (a stage must have its plugin's kind: it decides where in the pipeline the stage runs)`;
  if (typeof s.run !== 'function') return 'its stage has no run() function';
  if (s.stripHeaders !== undefined && !(Array.isArray(s.stripHeaders) && s.stripHeaders.every((h) => typeof h === 'string' && HEADER_NAME.test(h)))) return 'its stage\'s stripHeaders must be a list of header names';
  const shared = (s.stripHeaders as string[] | undefined)?.find((h) => EXCHANGE_HEADERS.has(dashedName(h)));
  if (shared !== undefined) return `its stage's stripHeaders names ${shared}, which clients send to every app: a stage's stripHeaders are dropped on every app of the config, so it would be taken from all their requests (list only headers that carry identity, which no client may supply)`;
  return undefined;
}
