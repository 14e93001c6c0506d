/**
 * Browser sign-in: sending the browser to the provider, the callback, sign-out
 * and step-up. The gateway owns these paths on every app host.
 *
 * Callback choice: one callback per app host, `/.drawbridge/callback`. The
 * session cookie is host-only, so the host that receives the code is the host
 * that sets the cookie: no cross-host hand-off token to sign, replay-protect
 * and expire, and no single public host every sign-in depends on. The cost is
 * one redirect URI per app host at the provider (the embedded provider
 * registers them from the config).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { Logger } from 'pino';
import type { Edge, InternalHandler } from '../gateway/edge.js';
import { sendError, type NextStep } from '../gateway/errorPages.js';
import { normalizeTarget } from '../gateway/normalize.js';
import type { Generation } from '../pipeline/generation.js';
import type { RequestContext, StepUp } from '../pipeline/stage.js';
import { meetsMfa, signInAge } from './claims.js';
import { ClientRefusedError, ProviderUnavailableError, tokenRefusal } from './discovery.js';
import { frameCannotSignIn, framedSignInPage, inAnotherSite, signInRequiredHeaders } from './framedSignIn.js';
import { consumeLoginState, loginCookies, newLoginState, readLoginState, releaseLoginState } from './loginState.js';
import { providerRefusal } from './providerError.js';
import { portalAt, portalUrl } from './portal.js';
import { appRoot, requestedTarget, safeReturnUrl, signInLink } from './returnUrl.js';
import { DEFAULT_REQUIREMENTS } from '../policy/engine.js';
import { CALLBACK_PATH, ME_PATH, SIGN_IN_PATH, SIGN_OUT_PATH, SIGNED_OUT_PATH, existingRuntime, type AppIdentity, type IdentityRuntime } from './runtime.js';
import { clearSessionCookie, createSessionCookie, MIN_TOKEN_BOUND_SESSION_SEC, readSession, revokeSession, SessionTooLargeError } from './session.js';

const HOST_HEADER = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** scheme://host[:port] as the browser addressed us, or undefined for a Host header we would not echo. */
export function originOf(protocol: 'http' | 'https', hostHeader: string | string[] | undefined): string | undefined {
  const h = Array.isArray(hostHeader) ? hostHeader[0] : hostHeader;
  if (!h || !HOST_HEADER.test(h)) return undefined;
  try {
    return new URL(`${protocol}://${h}`).origin;
  } catch {
    return undefined;
  }
}

export interface SignInStart {
  location: string;
  /** the login state cookie, and the expiry of the older ones past the bound */
  setCookie: string[];
}

/** A redirect to the provider, with the login state cookie that will finish it. */
export async function startSignIn(rt: IdentityRuntime, app: AppIdentity, origin: string, returnUrl: string, stepUp?: StepUp, cookieHeader?: string | string[]): Promise<SignInStart> {
  const redirectUri = origin + CALLBACK_PATH;
  const st = newLoginState(rt, app.name, redirectUri, returnUrl, stepUp);
  const url = await rt.client.authorizationUrl({ redirectUri, scope: rt.scopes, state: st.s, nonce: st.n, codeVerifier: st.pv, acrValues: stepUp?.acrValues, maxAge: stepUp?.maxAge, prompt: stepUp?.prompt });
  const secure = origin.startsWith('https:');
  return { location: url.href, setCookie: await loginCookies(rt, st, secure, cookieHeader, appRoot({ origin, prefix: app.prefix })) };
}

export function redirect(res: ServerResponse, location: string, cookies: string[] = [], status: 302 | 307 = 302): void {
  res.statusCode = status;
  res.setHeader('location', location);
  res.setHeader('cache-control', 'no-store');
  if (cookies.length) res.setHeader('set-cookie', cookies);
  res.end();
}

/** how long a browser or client is asked to wait when the provider is down or asks to be tried later */
const RETRY_AFTER_SEC = '5';

export function unavailable(req: IncomingMessage, res: ServerResponse, id: string, app?: string): void {
  sendError(res, req.headers, { status: 503, reason: 'The sign-in service cannot be reached right now. Try again in a moment.', correlationId: id, app, headers: { 'retry-after': RETRY_AFTER_SEC } });
}

/** Registers the gateway-owned identity endpoints and the step-up handler on both edges. */
export function installIdentity(edges: { http: Edge; https: Edge }, log: Logger): void {
  for (const edge of [edges.http, edges.https]) {
    edge.internal.set(CALLBACK_PATH, callbackHandler(log));
    edge.internal.set(SIGN_IN_PATH, signInHandler);
    const signOut = signOutHandler(log);
    edge.internal.set(SIGN_OUT_PATH, signOut);
    edge.internal.set(SIGNED_OUT_PATH, signedOutHandler);
    edge.internal.set(ME_PATH, meHandler);
    // an app under a path prefix gets its session cookie only there (Path=<prefix>)
    edge.internalUnderPrefix.set(SIGN_OUT_PATH, signOut);
    edge.internalUnderPrefix.set(ME_PATH, meHandler);
    edge.stepUpHandler = stepUpHandler(log);
  }
}

/** The app with sign-in that this host and path route to, the app portal among them (portal.ts). */
function appAt(gen: Generation, host: string, path: string): { rt: IdentityRuntime; app: AppIdentity } | undefined {
  const m = gen.router.match(host, path);
  if (!m) return portalAt(gen, host, path);
  if (m.target.preAuth !== 'oidc') return undefined;
  const rt = existingRuntime(gen.config);
  const app = rt?.apps.get(m.target.name);
  return rt && app ? { rt, app } : undefined;
}

const callbackHandler =
  (log: Logger): InternalHandler =>
  async (req, res, ctx) => {
    const origin = originOf(ctx.protocol, req.headers.host);
    const params = new URLSearchParams(ctx.search);
    const state = params.get('state');
    const rt = existingRuntime(ctx.generation.config);
    let appName: string | undefined;
    const fail = (status: number, reason: string, detail: string, cookies: string[] = [], more: { headers?: Record<string, string>; next?: NextStep } = {}) => {
      log.warn({ correlationId: ctx.id, app: appName, reason: detail }, 'sign-in callback refused');
      // Once the login state names the app, a refusal is that app's access decision. Before, the
      // callback is tied to no sign-in this gateway started: the log line is all there is.
      if (appName) ctx.record({ app: appName, decision: 'sign-in-refused', reasons: [`sign-in refused: ${detail.slice(0, MAX_REASON)}`] });
      if (cookies.length) res.setHeader('set-cookie', cookies);
      sendError(res, req.headers, { status, reason, correlationId: ctx.id, ...more });
    };
    if (!origin || !rt || !state) return fail(400, 'The sign-in response is incomplete. Open the app again to sign in.', 'no state, origin or identity runtime');
    const secure = ctx.protocol === 'https';
    const login = await readLoginState(rt, state, req.headers.cookie, secure);
    if (!login) {
      // A sibling tab's sign-in finished first, or the callback came back from the history: the
      // browser is signed in to the app at the host root (the only one whose session cookie is
      // sent to this path), and its root is a better place to land than a page that says start over.
      const root = appAt(ctx.generation, ctx.host, '/');
      if (root && (await readSession(root.rt, root.app, ctx.host, ctx.protocol, req.headers.cookie)).identity) {
        log.info({ correlationId: ctx.id, app: root.app.name }, 'sign-in callback without its login state, already signed in: to the app root');
        return redirect(res, appRoot({ origin, prefix: root.app.prefix }));
      }
      // The user may have just typed a password (a provider form left open past the login cookie's
      // life, a sign-in pushed out by later tabs), and Reload gives this page again: it links to
      // this host's app (the root one, else the first), where a sign-in starts afresh.
      const here = signInAppsAt(ctx.generation, rt, ctx.host)[0];
      const next = here ? { href: here.prefix, label: 'Open the app again' } : undefined;
      return fail(400, 'This sign-in was not started in this browser or has expired. Open the app again to sign in.', 'no login state for this state parameter', [], { next });
    }
    const { st, clear } = login;
    const app = rt.apps.get(st.a);
    appName = app?.name;
    if (!app || appAt(ctx.generation, ctx.host, app.prefix)?.app.name !== app.name || st.ru !== origin + CALLBACK_PATH) return fail(400, 'The sign-in response arrived at the wrong address.', 'callback host does not match the login state', [clear]);
    const error = params.get('error');
    if (error) {
      // The login cookie goes either way: the provider issued no code, so a reload has nothing to finish.
      const refusal = providerRefusal(error, new URL(rt.config.identity!.issuer).host);
      const again = new URL(st.r);
      const next = { href: signInLink(again.pathname + again.search, { maxAge: st.ma, acrValues: st.acr }), label: 'Sign in again' };
      const headers = refusal.retryLater ? { 'retry-after': RETRY_AFTER_SEC } : undefined;
      return fail(refusal.status, refusal.reason, `provider error ${error}: ${params.get('error_description') ?? ''}`, [clear], { headers, next });
    }
    // what a forged or used code gets from the provider, and a replayed login state from the gateway
    const unverified = (detail: string) => fail(401, 'The sign-in response could not be verified. Open the app again to sign in.', detail, [clear]);
    const staleSignIn = (detail: string) =>
      fail(403, 'This app requires a recent sign-in, and the identity provider reported an older one. Signing in again may not help; tell your administrator (the identity provider\'s clock may be behind the gateway\'s).', detail, [clear]);
    if (!consumeLoginState(st, Math.floor(rt.now() / 1000))) return unverified('this sign-in already went to the token endpoint (login state replayed)');
    let claims: Record<string, unknown>;
    try {
      const done = await rt.client.finishSignIn(new URL(st.ru + ctx.search), { state: st.s, nonce: st.n, codeVerifier: st.pv, maxAge: st.ma });
      await verifyIdTokenSignature(rt, done.idToken);
      claims = done.claims;
    } catch (e) {
      if (e instanceof ProviderUnavailableError) {
        // An outage, not a bad response: the login cookie stays, so a reload can finish while the code is valid.
        releaseLoginState(st);
        log.error({ correlationId: ctx.id, app: app.name, err: e }, 'identity provider unavailable');
        return unavailable(req, res, ctx.id, app.name);
      }
      if (e instanceof ClientRefusedError) {
        // the gateway's configuration, not the user's sign-in: said once at error, and no "try again" that cannot help
        log.error({ correlationId: ctx.id, app: app.name, err: e }, 'the identity provider refused the gateway at its token endpoint');
        return fail(502, "Sign-in to this app is failing on the gateway's side: the identity provider did not accept the gateway. Signing in again will not help; tell your administrator.", e.message, [clear]);
      }
      // openid-client's own max_age check, with the clock tolerance: said as the check below says it
      if (st.ma !== undefined && tooOldForMaxAge(e)) return staleSignIn(`step-up asked for max_age=${st.ma}: too much time has elapsed since the sign-in the ID token reports (auth_time)`);
      return unverified(tokenRefusal(e));
    }
    // A sign-in older than the max_age the step-up asked for fails the sign-in frequency again at
    // the next request, which asks for it again: with a provider whose clock is behind by more
    // than the frequency, the user typed a password every few seconds, for ever.
    // So does one the frequency check takes as dated ahead of the gateway's clock (signInAge):
    // only the operator can fix the clocks, so that is said at error, with both.
    const age = signInAge(claims, rt.now(), rt.clockToleranceSec);
    if (st.ma !== undefined && age) {
      const authTime = new Date((claims.auth_time as number) * 1000).toISOString();
      if (age.ageS > st.ma) return staleSignIn(`step-up asked for max_age=${st.ma}; the ID token's auth_time is ${authTime}, ${age.ageS} s ago`);
      if (age.ahead) {
        const gatewayNow = new Date(rt.now()).toISOString();
        log.error({ correlationId: ctx.id, app: app.name, authTime, gatewayTime: gatewayNow, clockToleranceSec: rt.clockToleranceSec }, `the identity provider dated a sign-in ${-age.ageS} s after the gateway's clock: one of the two clocks is wrong`);
        return fail(403, "This app requires a recent sign-in, and the identity provider dated yours ahead of the gateway's clock. Signing in again will not help; tell your administrator (the clocks of the identity provider and the gateway disagree).", `step-up asked for max_age=${st.ma}; the ID token's auth_time is ${authTime}, ${-age.ageS} s after the gateway's clock (${gatewayNow}), past clockTolerance (${rt.clockToleranceSec} s)`, [clear]);
      }
    }
    // acr_values is a request the provider may ignore (Entra does): a step-up that comes back without
    // MFA would be sent for MFA again at once, and again, in a loop only the browser's limit ends.
    if (st.acr && !st.acr.split(' ').includes(String(claims.acr)) && !meetsMfa(claims, rt.config.identity!.mfaAcrValues ?? DEFAULT_REQUIREMENTS.mfaAcrValues)) {
      return fail(403, 'This app requires multi-factor authentication, and your sign-in did not provide it. Sign in with a second factor, or ask your administrator how to set one up.', `step-up asked for acr_values=${st.acr}; the ID token has acr=${String(claims.acr)} amr=${JSON.stringify(claims.amr ?? null)}`, [clear]);
    }
    let session: Awaited<ReturnType<typeof createSessionCookie>>;
    try {
      session = await createSessionCookie(rt, app, ctx.host, ctx.protocol, claims);
    } catch (e) {
      if (e instanceof SessionTooLargeError) {
        const reason =
          e.tooLarge === 'claims'
            ? 'The sign-in carries claims about your account (such as its name) too large for a browser session. Ask your administrator to shorten them or limit the claims sent to this gateway.'
            : 'Your account is a member of too many groups for a browser session. Ask your administrator to limit the groups sent to this gateway.';
        return fail(431, reason, e.message, [clear]);
      }
      return fail(401, 'The sign-in did not name a user.', (e as Error).message, [clear]);
    }
    log.info({ correlationId: ctx.id, app: app.name, user: session.identity.user, acr: claims.acr, amr: claims.amr }, 'signed in');
    if (session.tokenLeftSec !== undefined) log.warn({ correlationId: ctx.id, app: app.name, user: session.identity.user, idTokenExpiresInSec: session.tokenLeftSec }, `the ID token expires in ${session.tokenLeftSec} s by the gateway's clock, so the session that ends with it (endWithIdToken) lasts ${MIN_TOKEN_BOUND_SESSION_SEC} s: check the provider's ID token lifetime, and the two clocks`);
    ctx.record({ app: app.name, decision: 'sign-in', user: session.identity.user, reasons: signInFacts(claims) });
    const target = safeReturnUrl(st.r, { origin, prefix: app.prefix });
    // A SameSite=Strict cookie is not sent on a redirect chain that started at the provider (another
    // site): the browser would come back without it and sign in again, forever. A page on our own
    // origin that moves on starts a same-site navigation, which carries the cookie.
    if (app.sameSite === 'strict') return continuePage(res, target, [clear, session.setCookie]);
    redirect(res, target, [clear, session.setCookie]);
  };

/** openid-client's refusal of an ID token whose auth_time is older than max_age allows (the reason is in its causes) */
function tooOldForMaxAge(e: unknown): boolean {
  for (let c = e, depth = 0; c && typeof c === 'object' && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    if ((c as { claim?: unknown }).claim === 'auth_time' || /too much time has elapsed/i.test(String((c as { message?: unknown }).message))) return true;
  }
  return false;
}

/** the provider's words in a refusal (error_description) are the client's to choose: kept short */
const MAX_REASON = 300;

/** How the user signed in, for the audit trail: the methods and the assurance level the provider reported. */
function signInFacts(claims: Record<string, unknown>): string[] {
  const amr = Array.isArray(claims.amr) ? claims.amr.filter((m): m is string => typeof m === 'string').join(' ') : '';
  const facts: string[] = [];
  if (amr) facts.push(`amr: ${amr.slice(0, MAX_REASON)}`);
  if (typeof claims.acr === 'string' && claims.acr) facts.push(`acr: ${claims.acr.slice(0, MAX_REASON)}`);
  return facts;
}

function htmlAttr(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function continuePage(res: ServerResponse, target: string, cookies: string[], words = 'Signed in'): void {
  const url = htmlAttr(target);
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${url}"><title>${words}</title></head><body><p>${words}. <a href="${url}">Continue</a></p></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'set-cookie': cookies, 'content-security-policy': "default-src 'none'" }).end(body);
}

/** Verifies the ID token signature too: openid-client trusts the TLS channel, we pin keys and algorithms as for bearer tokens. */
export async function verifyIdTokenSignature(rt: IdentityRuntime, idToken: string): Promise<void> {
  const keys = await rt.idTokenKeys();
  try {
    await jwtVerify(idToken, keys, { algorithms: [...rt.algorithms], issuer: rt.config.identity!.issuer, audience: rt.config.identity!.clientId, clockTolerance: rt.clockToleranceSec });
  } catch (e) {
    // The keys out of reach (timeout, network error, a JWKS endpoint failing) is an outage, as for bearer tokens.
    const unreachable = e instanceof joseErrors.JWKSTimeout || !(e instanceof joseErrors.JOSEError) || /^Expected 200 OK/.test((e as Error).message);
    if (unreachable) throw new ProviderUnavailableError(rt.config.identity!.issuer, `JWKS: ${(e as Error).message}`);
    throw e;
  }
}

/** GET /.drawbridge/sign-in?returnUrl=...: starts a sign-in for the app at this host. */
const signInHandler: InternalHandler = async (req, res, ctx) => {
  const origin = originOf(ctx.protocol, req.headers.host);
  const candidate = new URLSearchParams(ctx.search).get('returnUrl');
  let path = '/';
  try {
    if (candidate?.startsWith('/') && !candidate.startsWith('//')) path = new URL(candidate, 'http://x').pathname;
  } catch {
    /* the root app */
  }
  const found = appAt(ctx.generation, ctx.host, path) ?? appAt(ctx.generation, ctx.host, '/');
  if (!origin || !found) return sendError(res, req.headers, { status: 404, reason: 'No app with sign-in is published at this address.', correlationId: ctx.id });
  const target = safeReturnUrl(candidate, { origin, prefix: found.app.prefix });
  try {
    const s = await startSignIn(found.rt, found.app, origin, target, stepUpAsked(found.rt, new URLSearchParams(ctx.search)), req.headers.cookie);
    redirect(res, s.location, s.setCookie);
  } catch (e) {
    if (e instanceof ProviderUnavailableError) return unavailable(req, res, ctx.id, found.app.name);
    throw e;
  }
};

/**
 * The step-up a sign-in link carries (signInLink): `max_age` (with prompt=login, as a policy's
 * signInFrequency asks for it), and `acr_values` only among identity.mfaAcrValues, which the
 * callback can tell were met. Asking for more than the app needs costs the user a prompt, no more.
 */
function stepUpAsked(rt: IdentityRuntime, q: URLSearchParams): StepUp | undefined {
  const maxAge = /^\d{1,9}$/.test(q.get('max_age') ?? '') ? Number(q.get('max_age')) : undefined;
  const mfa = rt.config.identity!.mfaAcrValues ?? DEFAULT_REQUIREMENTS.mfaAcrValues;
  const acr = q.get('acr_values');
  const acrValues = acr && acr.split(' ').every((v) => mfa.includes(v) || (!mfa.length && v === 'mfa')) ? acr : undefined;
  if (maxAge === undefined && !acrValues) return undefined;
  return { ...(acrValues ? { acrValues } : {}), ...(maxAge !== undefined ? { maxAge, prompt: 'login' as const } : {}) };
}

/**
 * Sign-out changes state, so a page elsewhere must not be able to trigger it
 * (a hidden image, a link preview, a prefetch). It runs on a GET the user
 * made at this site (typed, bookmarked, or a link on one of its pages, as
 * the browser's Sec-Fetch-Site says) or on a POST whose Origin is this site;
 * anything else gets a page with a button that makes that POST.
 */
function signOutIntent(req: Pick<IncomingMessage, 'method' | 'headers'>, origin: string | undefined): 'sign-out' | 'confirm' | 'refuse' {
  const h = req.headers;
  const site = h['sec-fetch-site'];
  if (req.method === 'POST') return origin !== undefined && (h.origin === origin || (h.origin === undefined && site === 'same-origin')) ? 'sign-out' : 'refuse';
  const purpose = String(h['sec-purpose'] ?? h['purpose'] ?? '');
  if (/prefetch|prerender/i.test(purpose)) return 'confirm';
  return site === 'same-origin' || site === 'none' ? 'sign-out' : 'confirm';
}

function signOutConfirmPage(res: ServerResponse, action: string): void {
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign out</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:12vh auto;max-width:32rem}button{font:inherit;padding:.4rem 1.2rem}</style></head><body><h1>Sign out?</h1><p>This ends your session with the apps published at this address.</p><form method="post" action="${htmlAttr(action)}"><button type="submit">Sign out</button></form></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-frame-options': 'DENY', 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'" }).end(body);
}

/** `/.drawbridge/…` as served under an app's path prefix (`/a/.drawbridge/…`), where that app's session cookie is sent */
function underPrefix(prefix: string, ownedPath: string): string {
  return prefix === '/' ? ownedPath : prefix + ownedPath.slice(1);
}

/** marks a prefix app's sign-out step as one the chain sent the browser to */
const CHAIN_STEP = 'step';

/** The sign-out step for the app at `prefix`, as the chain links to it. */
function chainStep(prefix: string): string {
  return prefix === '/' ? SIGN_OUT_PATH : `${underPrefix(prefix, SIGN_OUT_PATH)}?${CHAIN_STEP}=1`;
}

/** sign-out steps answered with a redirect in a row, well under browsers' limit with the provider's own redirects after them */
const SIGN_OUT_STEPS_PER_PAGE = 10;

/**
 * The apps with sign-in published on this host, in the order a sign-out ends them: the one at the
 * host root, then those under a path prefix, by prefix. Derived from the config alone: nothing in the
 * request chooses which sessions a sign-out ends or where it goes next.
 */
function signInAppsAt(gen: Generation, rt: IdentityRuntime, host: string): AppIdentity[] {
  const here = [...rt.apps.values()].filter((app) => appAt(gen, host, app.prefix)?.app.name === app.name);
  // '/' sorts before every other prefix; one host has one app per prefix
  return here.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
}

/**
 * Ends the sessions of every app on this host: revoked at the gateway (a copy
 * of the cookie stops working too) and cleared in the browser; then at the
 * provider when it offers end_session.
 *
 * The browser sends the session cookie of an app under a path prefix only to
 * paths under it, so sign-out is a chain of same-origin steps:
 * `/.drawbridge/sign-out` ends the root app's session, then each prefix app's
 * `<prefix>.drawbridge/sign-out` ends its own, and the last one goes on to the
 * provider. A step clears only its own app's cookie: clearing a prefix app's
 * cookie earlier would stop the browser sending it to that app's step, which
 * could then revoke nothing. Every step asks for the same intent as the first.
 */
const signOutHandler = (log: Logger): InternalHandler => async (req, res, ctx) => {
  const origin = originOf(ctx.protocol, req.headers.host);
  const rt = existingRuntime(ctx.generation.config);
  const steps = rt ? signInAppsAt(ctx.generation, rt, ctx.host) : [];
  const prefixed = steps.filter((app) => app.prefix !== '/');
  const at = prefixed.findIndex((app) => app.prefix === ctx.prefix);
  if (ctx.prefix !== '/' && at < 0) return sendError(res, req.headers, { status: 404, reason: 'No app with sign-in is published at this address.', correlationId: ctx.id });
  if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'POST') {
    res.setHeader('allow', 'GET, HEAD, POST');
    return sendError(res, req.headers, { status: 405, reason: 'Sign out with GET or POST.', correlationId: ctx.id });
  }
  // A prefix app's step that the chain did not send the browser to (a relative `.drawbridge/sign-out`
  // link in the app) ended that app's session and the ones after it, and left the root app and the
  // prefixes before it signed in: the chain starts at the root instead. The mark can only make a
  // sign-out skip steps a browser could skip anyway by stopping, never end another session.
  if (ctx.prefix !== '/' && !new URLSearchParams(ctx.search).has(CHAIN_STEP)) return redirect(res, (origin ?? '') + SIGN_OUT_PATH, [], req.method === 'POST' ? 307 : 302);
  const intent = signOutIntent(req, origin);
  if (intent === 'refuse') return sendError(res, req.headers, { status: 403, reason: 'A sign-out request must come from this site.', correlationId: ctx.id });
  // the button posts to this step, so a browser without Sec-Fetch-Site moves on instead of starting over
  if (intent === 'confirm') return signOutConfirmPage(res, chainStep(ctx.prefix));
  // The app's pages stay in the browser's cache and history: Back after sign-out showed the last
  // one. "cache" only: "cookies" would reach every host of the registrable domain, and this step
  // runs only for a sign-out this site asked for.
  res.setHeader('clear-site-data', '"cache"');
  const cookies: string[] = [];
  for (const app of steps.filter((a) => a.prefix === ctx.prefix)) {
    cookies.push(clearSessionCookie(app, ctx.protocol));
    try {
      const user = await revokeSession(rt!, app, ctx.host, ctx.protocol, req.headers.cookie);
      if (user) {
        log.info({ correlationId: ctx.id, app: app.name, user }, 'signed out: session revoked');
        ctx.record({ app: app.name, decision: 'sign-out', user });
      }
    } catch (e) {
      // still revoked in this process, and the browser's cookie is cleared; only a restart would forget it
      log.error({ correlationId: ctx.id, app: app.name, reason: (e as Error).message }, 'could not record the revoked session in stateDir');
    }
  }
  const next = prefixed[at + 1];
  if (next) {
    const step = (origin ?? '') + chainStep(next.prefix);
    // Browsers follow about 20 redirects in a row, then show an error: a long chain rests on a page
    // that moves on (a navigation of its own, from this origin) every few steps.
    if ((at + 2) % SIGN_OUT_STEPS_PER_PAGE === 0) return continuePage(res, step, cookies, 'Signing out');
    // 307 keeps a POST a POST (with this Origin): a browser without Sec-Fetch-Site needs one click, not one per app
    return redirect(res, step, cookies, req.method === 'POST' ? 307 : 302);
  }
  const done = origin ? origin + SIGNED_OUT_PATH : SIGNED_OUT_PATH;
  const end = rt && origin ? await rt.client.endSessionUrl(done) : undefined;
  redirect(res, end?.href ?? done, cookies);
};

/**
 * No Clear-Site-Data here: browsers apply `"cookies"` to the whole registrable domain (every
 * company site under it, every other app host's session), and any site can send the browser
 * to this page. The sign-out handler has already expired this host's cookies by name.
 */
const signedOutHandler: InternalHandler = (_req, res, ctx) => {
  // after a sign-out at the portal, nothing on this page led back to it: the list is one link away
  const portal = portalUrl(ctx.generation);
  const back = portal ? ` <a href="${htmlAttr(portal)}">My apps</a> lists them.` : '';
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:12vh auto;max-width:32rem}</style></head><body><h1>You have signed out</h1><p>Close the browser to finish, or open an app again to sign in.${back}</p></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(body);
};

/**
 * Who is signed in to the app at this host (JSON). At the root, `?path=` picks the app; one under a
 * path prefix is answered at `<prefix>.drawbridge/me`, where the browser sends its cookie, and a
 * request here is redirected there (fetch follows a same-origin redirect with the cookies that path gets).
 */
const meHandler: InternalHandler = async (req, res, ctx) => {
  const asked = ctx.prefix !== '/' ? ctx.prefix : (new URLSearchParams(ctx.search).get('path') ?? '/');
  // the app the router would give that path (dot segments and duplicate slashes resolved as it does)
  const routed = normalizeTarget(asked.startsWith('/') ? asked : '/');
  const path = routed.ok ? routed.path : '/';
  const found = appAt(ctx.generation, ctx.host, path);
  const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body, null, 2));
  if (!found || (ctx.prefix !== '/' && found.app.prefix !== ctx.prefix)) return void send(404, { error: 'no app with sign-in at this address' });
  if (found.app.prefix !== ctx.prefix) return redirect(res, underPrefix(found.app.prefix, ME_PATH));
  const s = await readSession(found.rt, found.app, ctx.host, ctx.protocol, req.headers.cookie);
  if (!s.identity) return void send(401, { signedIn: false, app: found.app.name, signIn: signInLink(path) });
  // the root's sign-out, which ends this host's other apps too
  send(200, { signedIn: true, app: found.app.name, user: s.identity.user, groups: s.identity.groups, claims: s.identity.claims, expires: new Date(s.exp! * 1000).toISOString(), signOut: SIGN_OUT_PATH });
};

/** A stage asked for a stronger or fresher sign-in: back to the provider, then back here. */
const stepUpHandler =
  (log: Logger) =>
  async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, stepUp: StepUp): Promise<void> => {
    const origin = originOf(ctx.protocol, req.headers.host);
    const rt = runtimeForContext(ctx);
    const app = rt?.apps.get(ctx.app.name);
    if (!origin || !rt || !app) return sendError(res, req.headers, { status: 401, reason: 'A stronger sign-in is required.', correlationId: ctx.id, app: ctx.app.name });
    const prefix = app.prefix;
    if (frameCannotSignIn(req.headers, app.sameSite, ctx.protocol)) {
      // the provider in a frame is the dead end a sign-in there is (framedSignIn.ts): a new window instead
      const body = framedSignInPage({ app: app.name, target: requestedTarget(ctx), crossSite: inAnotherSite(req.headers), correlationId: ctx.id, stepUp: true });
      log.info({ correlationId: ctx.id, app: app.name, stepUp }, 'step-up asked in a frame: answered with a page to sign in in a new window');
      res.writeHead(401, signInRequiredHeaders(app.name)).end(body);
      return;
    }
    const target = safeReturnUrl(requestedTarget(ctx), { origin, prefix }) || appRoot({ origin, prefix });
    try {
      const s = await startSignIn(rt, app, origin, target, stepUp, req.headers.cookie);
      log.info({ correlationId: ctx.id, app: app.name, stepUp }, 'step-up sign-in');
      redirect(res, s.location, s.setCookie);
    } catch (e) {
      if (e instanceof ProviderUnavailableError) return unavailable(req, res, ctx.id, app.name);
      throw e;
    }
  };

/** The runtime of the generation that is serving this request, recorded by the OIDC stage. */
const contextRuntime = new WeakMap<RequestContext, IdentityRuntime>();
export function rememberRuntime(ctx: RequestContext, rt: IdentityRuntime): void {
  contextRuntime.set(ctx, rt);
}
function runtimeForContext(ctx: RequestContext): IdentityRuntime | undefined {
  return contextRuntime.get(ctx);
}
