/**
 * The app portal's page (My Apps): at gateway.publicUrl, for a signed-in user, the apps they may
 * open. Where it is served and how its users sign in: identity/portal.ts.
 *
 * The list is assignment only, as Entra's My Apps lists the apps a user is assigned to:
 * conditional-access policies are not evaluated here (each app still enforces them when opened).
 * An app hidden with `visibleToUsers: false`, or not assigned to the user, is not named at all,
 * in the page or the JSON. Nothing the portal receives is forwarded anywhere.
 */
import type { Config } from '../config/load.js';
import type { AppConfig } from '../config/schema.js';
import { isBrowserNavigation } from '../identity/clientKind.js';
import { isFrameNavigation } from '../identity/framedSignIn.js';
import { ProviderUnavailableError } from '../identity/discovery.js';
import { portalAt } from '../identity/portal.js';
import { appRoot } from '../identity/returnUrl.js';
import { SIGN_OUT_PATH } from '../identity/runtime.js';
import { clearSessionCookie, readSession } from '../identity/session.js';
import { originOf, redirect, startSignIn, unavailable } from '../identity/signIn.js';
import type { Identity } from '../pipeline/stage.js';
import { admits, assignedTo, type Assigned } from '../plugins/access/assignment.js';
import type { Edge, InternalHandler } from './edge.js';
import { escapeHtml, sendError, wantsJson } from './errorPages.js';
import { CORRELATION_HEADER } from './headers.js';

interface Listed {
  name: string;
  url: string;
  /** undefined: every signed-in user (an app without assignment, a passthrough app) */
  assigned?: Assigned;
}

const listed = new WeakMap<Config, readonly Listed[]>();

/**
 * The apps the portal may list, once per config. An app with a wildcard host (`https://*.x/`) is
 * left out: it has no single address to link to; publish a host of it as an app of its own to list that.
 */
function listable(config: Config): readonly Listed[] {
  let apps = listed.get(config);
  if (apps) return apps;
  apps = (config.apps as AppConfig[])
    .filter((a) => a.visibleToUsers !== false && !a.externalUrl.includes('://*.'))
    .map((a) => ({ name: a.name, url: a.externalUrl, ...(a.assignment ? { assigned: assignedTo(a.assignment) } : {}) }));
  listed.set(config, apps);
  return apps;
}

/** The apps this user is shown, in the config's order. */
export function appsFor(config: Config, id: Identity): { name: string; url: string }[] {
  return listable(config)
    .filter((a) => !a.assigned || admits(a.assigned, id) !== undefined)
    .map(({ name, url }) => ({ name, url }));
}

export function installPortal(edges: { http: Edge; https: Edge }): void {
  for (const edge of [edges.http, edges.https]) {
    edge.portalAt = (gen, host, path) => {
      const p = portalAt(gen, host, path);
      if (!p) return undefined;
      // the page only: below it is nothing of the portal's but its `.drawbridge/` endpoints
      return { prefix: p.app.prefix, page: path === p.app.prefix || path === p.app.prefix.slice(0, -1) ? portalPage : undefined };
    };
  }
}

const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
};

const portalPage: InternalHandler = async (req, res, ctx) => {
  const found = portalAt(ctx.generation, ctx.host, ctx.path)!;
  const { rt, app } = found;
  const origin = originOf(ctx.protocol, req.headers.host);
  if (!origin) return sendError(res, req.headers, { status: 400, reason: 'The request has no valid Host header.', correlationId: ctx.id });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return sendError(res, req.headers, { status: 405, reason: 'The app portal is read with GET.', correlationId: ctx.id });
  }
  // `/portal` for a portal at `/portal/`: its cookie is on `Path=/portal/`, which the browser sends only there
  if (ctx.path !== app.prefix) return redirect(res, app.prefix + ctx.search);
  // In a frame the list is refused (X-Frame-Options) and a sign-in cannot happen (identity/framedSignIn.ts):
  // the frame showed the provider's error or a blocked frame. A link out is all it gets, and it lists nothing.
  if (isFrameNavigation(req.headers)) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'", [CORRELATION_HEADER]: ctx.id });
    return void res.end(req.method === 'HEAD' ? undefined : FRAMED_PAGE(app.prefix));
  }
  const s = await readSession(rt, app, ctx.host, ctx.protocol, req.headers.cookie);
  if (!s.identity) {
    const clear = s.present ? [clearSessionCookie(app, ctx.protocol)] : [];
    if (!isBrowserNavigation(req.method, req.headers)) {
      if (clear.length) res.setHeader('set-cookie', clear);
      return sendError(res, req.headers, { status: 401, reason: 'Sign in with a browser to see your apps.', correlationId: ctx.id, as: 'problem', headers: { 'www-authenticate': 'Bearer realm="portal"' } });
    }
    try {
      const start = await startSignIn(rt, app, origin, appRoot({ origin, prefix: app.prefix }), undefined, req.headers.cookie);
      return redirect(res, start.location, [...clear, ...start.setCookie]);
    } catch (e) {
      if (e instanceof ProviderUnavailableError) return unavailable(req, res, ctx.id);
      throw e;
    }
  }
  const apps = appsFor(ctx.generation.config, s.identity);
  const json = wantsJson(req.headers);
  const body = json ? JSON.stringify({ user: s.identity.user, apps, signOut: SIGN_OUT_PATH }, null, 2) : renderPortal(s.identity.user, apps);
  res.writeHead(200, { ...PAGE_HEADERS, 'content-type': json ? 'application/json' : 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), [CORRELATION_HEADER]: ctx.id, vary: 'accept, cookie' });
  res.end(req.method === 'HEAD' ? undefined : body);
};

/** What a frame gets instead of the list: the portal in a window of its own. */
const FRAMED_PAGE = (href: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>My apps</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:32rem}</style></head><body><h1>My apps</h1><p>Your apps are not listed inside a frame of another page. <a href="${escapeHtml(href)}" target="_blank" rel="noopener">Open My apps in a new window</a>.</p></body></html>`;

/** The page, in the error pages' style (errorPages.ts renderPage). */
export function renderPortal(user: string, apps: readonly { name: string; url: string }[]): string {
  const items = apps.map((a) => `<li><a href="${escapeHtml(a.url)}">${escapeHtml(a.name)}</a> <span>${escapeHtml(a.url)}</span></li>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>My apps</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f3f2f1;color:#201f1e}main{max-width:36rem;margin:12vh auto;background:#fff;padding:2rem 2.5rem;border-radius:4px;box-shadow:0 1px 4px #0002}h1{font-size:1.4rem;margin:0 0 1rem}ul{padding:0;list-style:none}li{margin:.5rem 0}li span{color:#605e5c;font-size:.9rem;margin-left:.5rem}p.who{color:#605e5c;font-size:.9rem}</style>
</head><body><main>
<h1>My apps</h1>
${apps.length ? `<ul>\n${items}\n</ul>` : '<p>No apps are assigned to you yet. Ask your administrator for access.</p>'}
<p class="who">Signed in as ${escapeHtml(user)}. <a href="${SIGN_OUT_PATH}">Sign out</a></p>
</main></body></html>
`;
}
