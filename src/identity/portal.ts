/**
 * Where the app portal is (My Apps): at `gateway.publicUrl`'s host and path, when `identity:` and
 * `session:` are configured and no app is published there (an app at that address takes it).
 *
 * The portal signs users in as an app does, so it is registered as one more app identity of the
 * generation's runtime, under a name no app can have (app names start with a letter or digit).
 * The callback, sign-in, sign-out and `me` endpoints then find it as they find an app (signIn.ts
 * appAt), and its session is bound to that name and the portal's host like an app's to its own:
 * a portal cookie opens no app, and no app's cookie opens the portal. The other route, a handler
 * with a sign-in of its own, would have repeated the login state, the callback's checks, the
 * session cookie and the sign-out chain, which are the parts a sign-in must not get wrong twice.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { externalUrlOf, hostPatternOf, prefixOf, type Router } from '../gateway/router.js';
import type { Generation } from '../pipeline/generation.js';
import { existingRuntime, runtimeFor, type AppIdentity, type IdentityRuntime } from './runtime.js';

/** the portal's app identity name: outside the config's app name pattern, so no app can be it */
export const PORTAL_APP = '(portal)';
/**
 * The portal's session cookie, a name of its own: an app under a longer path on the portal's host
 * has its cookie on that path, and neither overwrites the other. It is one of the gateway's cookies
 * (gatewayOwned.ts), taken out of every request to an app.
 */
export const PORTAL_COOKIE = 'drawbridge_portal';

/**
 * Registers the portal with the generation's identity runtime when the config serves one. Called
 * once the route table is complete (compile.ts), since an app at publicUrl's address takes it.
 */
function registerPortal(config: Config, router: Router<{ name: string }>, deps: { now: () => number; stateDir: string; logger?: Logger }): void {
  if (!config.identity || !config.session) return;
  const url = externalUrlOf(config.gateway.publicUrl);
  if (router.match(hostPatternOf(url), prefixOf(url))) return;
  runtimeFor(config, deps.now, deps.stateDir, deps.logger).registerApp({ name: PORTAL_APP, externalUrl: config.gateway.publicUrl, cookies: { name: PORTAL_COOKIE } });
}

/**
 * What identity needs once the generation's route table is complete (compile.ts): the portal, if
 * the config serves one, and the table itself, which the oidc stage asks which app a page is.
 */
export function routesComplete(config: Config, router: Router<{ name: string }>, deps: { now: () => number; stateDir: string; logger?: Logger }): void {
  registerPortal(config, router, deps);
  const rt = existingRuntime(config);
  if (rt) rt.routes = router;
}

/**
 * The portal, when this generation serves it and `path` on `host` is under its address. Asked
 * only where the generation's router found no app (an app under a longer prefix on the portal's
 * host keeps its own paths): every caller has just looked.
 */
export function portalAt(gen: Generation, host: string, path: string): { rt: IdentityRuntime; app: AppIdentity } | undefined {
  const rt = existingRuntime(gen.config);
  const app = rt?.apps.get(PORTAL_APP);
  if (!rt || !app) return undefined;
  if (host !== hostPatternOf(new URL(app.externalUrl))) return undefined;
  if (!path.startsWith(app.prefix) && path !== app.prefix.slice(0, -1)) return undefined;
  return { rt, app };
}

/** The portal's URL in this generation, or undefined when it serves none. */
export function portalUrl(gen: Generation): string | undefined {
  const app = existingRuntime(gen.config)?.apps.get(PORTAL_APP);
  return app && new URL(app.prefix, app.externalUrl).href;
}
