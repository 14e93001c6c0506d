/**
 * preAuth: oidc. A request gets through with a valid bearer token for the
 * app's audience or a valid session cookie for this app and host; otherwise a
 * browser navigation is sent to sign in and anything else gets 401 with
 * WWW-Authenticate. The gateway's cookies and (unless the app asks) the bearer
 * token are removed before the request goes on.
 */
import type { Config } from '../../config/load.js';
import type { AppConfig } from '../../config/schema.js';
import { PLUGIN_API_VERSION, type Decision, type Identity, type Plugin, type RequestContext, type Stage } from '../../pipeline/stage.js';
import { BearerError, NO_BEARER_TOKENS, refusalStatus } from '../../identity/bearer.js';
import { isBrowserNavigation, wantsPage } from '../../identity/clientKind.js';
import { frameCannotSignIn, framedSignInPage, inAnotherSite, signInRequiredHeaders } from '../../identity/framedSignIn.js';
import { ProviderUnavailableError } from '../../identity/discovery.js';
import { escapeHtml, titleOf } from '../../gateway/errorPages.js';
import { requestedTarget, safeReturnUrl, signInLink } from '../../identity/returnUrl.js';
import { runtimeFor, type AppIdentity, type IdentityRuntime } from '../../identity/runtime.js';
import { clearSessionCookie, readSession } from '../../identity/session.js';
import { originOf, rememberRuntime, startSignIn } from '../../identity/signIn.js';
import { throttledLog } from '../../observability/throttledLog.js';

export interface OidcStageOptions {
  /** the whole validated config: identity, session and this app */
  config: Config;
  app: AppConfig;
}

export const oidcPreauth: Plugin<OidcStageOptions> = {
  name: 'oidc',
  kind: 'preauth',
  apiVersion: PLUGIN_API_VERSION,
  description: 'OpenID Connect sign-in (session cookie) or bearer token.',
  optionsSchema: { type: 'object' },
  create: (options, context) => {
    const rt = runtimeFor(options.config, context.now, context.stateDir, context.logger);
    const app = rt.registerApp(options.app);
    const origins = new Set((options.app.websocketOrigins ?? []).map((o) => new URL(o).origin));
    return new OidcStage(rt, app, context.logger, origins);
  },
};

const json = (body: unknown) => JSON.stringify(body);
/**
 * RFC 6750 allows only printable ASCII other than `"` and `\` in error_description. Messages can
 * quote the token's own header (its alg, its parameter names), which the client controls.
 */
const NOT_IN_ERROR_DESCRIPTION = /[^\x20\x21\x23-\x5b\x5d-\x7e]/g;

class OidcStage implements Stage {
  readonly name = 'oidc';
  readonly kind = 'preauth' as const;

  constructor(
    private readonly rt: IdentityRuntime,
    private readonly app: AppIdentity,
    private readonly log: import('pino').Logger,
    /** origins besides the app's own whose pages may open its WebSockets with the session cookie */
    private readonly webSocketOrigins: ReadonlySet<string>,
  ) {
    this.providerDownLogged = throttledLog(log, 'identity provider unavailable', 60_000, 'error');
  }

  /**
   * During an outage every request, anonymous ones included, found the provider down: an error
   * line with its stack each (2,000 requests wrote 2.6 MB). The first is written, then one a
   * minute with the count; each request's own line carries the reason under its correlation id.
   */
  private readonly providerDownLogged: (fields: Record<string, unknown>) => void;

  run(ctx: RequestContext): Decision | Promise<Decision> {
    rememberRuntime(ctx, this.rt);
    const auth = ctx.headers.authorization;
    if (auth !== undefined && /^bearer\s/i.test(auth)) {
      const token = auth.slice(7).trim();
      // The same token again (an API client's common case) is let in without a promise: a pending
      // decision costs the edge a deadline timer and the stage a few turns of the microtask queue,
      // as much again as the cached check itself. A WebSocket takes the full path (its exp check).
      const known = this.app.audience && !ctx.upgrade ? this.rt.bearerVerifierNow(this.app)?.verifiedBefore(token) : undefined;
      if (known) return this.letIn(ctx, known.identity);
      return this.bearer(ctx, token);
    }
    return this.sessionOrSignIn(ctx);
  }

  private async sessionOrSignIn(ctx: RequestContext): Promise<Decision> {
    const s = await readSession(this.rt, this.app, ctx.host, ctx.protocol, ctx.headers.cookie);
    if (s.identity) return (ctx.upgrade && this.foreignPage(ctx)) || { kind: 'continue', identity: s.identity };
    const clear = s.present ? [clearSessionCookie(this.app, ctx.protocol)] : [];
    // `/pre` reaches the app at `/pre/`, but its `Path=/pre/` session cookie is never sent there, so
    // signing in from `/pre` would come back without a session and sign in again, forever. `Path=/pre`
    // would also match a sibling app at `/prefix/`; the browser goes to `/pre/` instead, as proxies do.
    const prefixWithoutSlash = this.app.prefix !== '/' && ctx.path === this.app.prefix.slice(0, -1);
    if (prefixWithoutSlash && !ctx.upgrade && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      return { kind: 'redirect', location: this.app.prefix + ctx.pathParams + ctx.search, reasons: ['app opened without the trailing slash of its path prefix'] };
    }

    if (!ctx.upgrade && !isBrowserNavigation(ctx.method, ctx.headers) && wantsPage(ctx.headers)) return this.signInPage(ctx, clear);
    if (ctx.upgrade || !isBrowserNavigation(ctx.method, ctx.headers)) return this.unauthorized(ctx, 'Sign-in is required: send a bearer token or sign in with a browser.', undefined, clear);
    if (frameCannotSignIn(ctx.headers, this.app.sameSite, ctx.protocol)) return this.framedPage(ctx, clear);
    const origin = originOf(ctx.protocol, ctx.headers.host);
    if (!origin) return { kind: 'deny', status: 400, reasons: ['host header cannot be echoed in a redirect'], publicReason: 'The request has no valid Host header.' };
    try {
      const start = await startSignIn(this.rt, this.app, origin, safeReturnUrl(requestedTarget(ctx), { origin, prefix: this.app.prefix }), undefined, ctx.headers.cookie);
      return { kind: 'redirect', location: start.location, headers: { 'set-cookie': [...clear, ...start.setCookie] }, reasons: [s.stale ? `${s.stale}: sign in again` : s.present ? 'session cookie not valid: sign in again' : 'no session: sign in'] };
    } catch (e) {
      return this.providerDown(ctx, e);
    }
  }

  /**
   * A WebSocket opened by a page of another origin. The browser sends the session cookie with
   * it whenever the page is on the same site (SameSite is per site: every host under the same
   * registrable domain, another published app among them), and, unlike a fetch, the page can
   * then read what the app sends: CORS does not apply to WebSockets. Browsers always send
   * Origin on the handshake (RFC 6455 10.2); a client without one is no page.
   */
  private foreignPage(ctx: RequestContext): Decision | undefined {
    const page = ctx.headers.origin;
    if (page === undefined || page === originOf(ctx.protocol, ctx.headers.host) || this.webSocketOrigins.has(page)) return undefined;
    return {
      kind: 'deny',
      status: 403,
      reasons: [`WebSocket opened with the session cookie by a page of another origin (${JSON.stringify(page.slice(0, 200))}), not in websocketOrigins`],
      publicReason: "This app's WebSocket connections are open to its own pages only.",
    };
  }

  private async bearer(ctx: RequestContext, token: string): Promise<Decision> {
    if (!this.app.audience) return this.unauthorized(ctx, NO_BEARER_TOKENS, 'invalid_token');
    try {
      const verifier = await this.rt.bearerVerifier(this.app);
      const { identity } = await verifier.verify(token);
      // clockTolerance admits a token a little past its exp for skew between clocks, on a request
      // that ends. A WebSocket is closed at exp (edge.ts): let in, it would reach the app and be cut
      // at once, and a client reconnecting with the same token would loop until the tolerance ran out.
      if (ctx.upgrade && identity.expiresAt !== undefined && identity.expiresAt * 1000 <= this.rt.now()) {
        throw new BearerError('exp', 'The token has expired.', 'past its exp: a WebSocket would be closed at once');
      }
      return this.letIn(ctx, identity);
    } catch (e) {
      if (e instanceof BearerError && e.check === 'jwks') {
        // The provider's keys are out of reach: nobody can be verified, which is an outage, not a bad token.
        return this.providerDown(ctx, new ProviderUnavailableError(this.rt.config.identity!.issuer, e.detail ?? e.message));
      }
      if (e instanceof BearerError) {
        this.log.info({ correlationId: ctx.id, check: e.check, detail: e.detail ?? e.publicMessage }, 'bearer token refused');
        return this.unauthorized(ctx, e.publicMessage, e.oauthError, [], e.check, refusalStatus(e));
      }
      return this.providerDown(ctx, e);
    }
  }

  private unauthorized(ctx: RequestContext, description: string, error?: 'invalid_token' | 'insufficient_scope', cookies: string[] = [], check?: string, status = 401): Decision {
    const realm = `realm="${this.app.name}"`;
    const challenge = error ? `Bearer ${realm}, error="${error}", error_description="${description.replace(NOT_IN_ERROR_DESCRIPTION, '')}"` : `Bearer ${realm}`;
    // problem+json like every other error the gateway answers (RFC 9457), with OAuth's own members
    // (RFC 6750) beside the problem's for clients that read those
    const headers: Record<string, string | string[]> = { 'www-authenticate': challenge, 'content-type': 'application/problem+json', 'cache-control': 'no-store' };
    if (cookies.length) headers['set-cookie'] = cookies;
    return {
      kind: 'respond',
      status,
      headers,
      body: json({ type: 'about:blank', title: titleOf(status), status, detail: description, correlationId: ctx.id, app: this.app.name, error: error ?? 'unauthorized', error_description: description, ...(check ? { check } : {}) }),
      reasons: [check ? `bearer token refused (${check}): ${description}` : description],
    };
  }

  private letIn(ctx: RequestContext, identity: Identity): Decision {
    if (!this.app.forwardToken) delete ctx.upstreamHeaders.authorization;
    return { kind: 'continue', identity };
  }

  /** 401 as for an API client, but as a page with a sign-in link: a form posted after the session ended. */
  private signInPage(ctx: RequestContext, cookies: string[]): Decision {
    const link = signInLink(this.formPage(ctx) ?? requestedTarget(ctx));
    // a form in a frame: sign-in cannot happen there (framedSignIn.ts), a window of its own can
    const framed = frameCannotSignIn(ctx.headers, this.app.sameSite, ctx.protocol) ? ' target="_blank" rel="noopener"' : '';
    const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>401 Sign-in required</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:12vh auto;max-width:32rem}</style></head><body><h1>Sign-in required</h1><p>Your session for ${escapeHtml(this.app.name)} has ended, so what you sent was not passed on. <a href="${escapeHtml(link)}"${framed}>Sign in again</a>, then send it again.</p><p>Correlation ID: <code>${escapeHtml(ctx.id)}</code></p></body></html>`;
    return this.signInRequired(body, cookies, `no session: ${ctx.method} sent from a page, answered with a sign-in link`);
  }

  /** 401 as a page the browser shows: the sign-in link it carries is the way on */
  private signInRequired(body: string, cookies: string[], reason: string): Decision {
    const headers: Record<string, string | string[]> = signInRequiredHeaders(this.app.name);
    if (cookies.length) headers['set-cookie'] = cookies;
    return { kind: 'respond', status: 401, headers, body, reasons: [reason] };
  }

  /** 401 as a page for a frame, which cannot sign in where it is (framedSignIn.ts): a new window can. */
  private framedPage(ctx: RequestContext, cookies: string[]): Decision {
    const crossSite = inAnotherSite(ctx.headers);
    const body = framedSignInPage({ app: this.app.name, target: requestedTarget(ctx), crossSite, correlationId: ctx.id });
    return this.signInRequired(body, cookies, `no session in a frame${crossSite ? ' of another site' : ''}: answered with a page to sign in in a new window`);
  }

  /**
   * The page of this app that sent the form (its Referer), where the sign-in link comes back
   * to: the form's own target, opened again as a link, is a GET that many apps answer with 405.
   * Another origin's page, or none sent (a no-referrer policy), leaves the form's target. So
   * does a page of another app on this host (under a longer prefix): its link would sign in to
   * that app, and the form would get this page again. A path that starts with `//` is never
   * made into a link, whatever checks the sign-in itself makes.
   */
  private formPage(ctx: RequestContext): string | undefined {
    const origin = originOf(ctx.protocol, ctx.headers.host);
    const referer = ctx.headers.referer;
    if (!origin || !referer) return undefined;
    let from: URL;
    try {
      from = new URL(referer);
    } catch {
      return undefined;
    }
    if (from.origin !== origin) return undefined;
    const back = new URL(safeReturnUrl(referer, { origin, prefix: this.app.prefix }));
    if (back.pathname.startsWith('//') || this.rt.appNameAt(ctx.host, back.pathname) !== this.app.name) return undefined;
    return back.pathname + back.search;
  }

  private providerDown(ctx: RequestContext, e: unknown): Decision {
    if (e instanceof ProviderUnavailableError) {
      this.providerDownLogged({ correlationId: ctx.id, err: e });
      return { kind: 'deny', status: 503, reasons: [e.message], publicReason: 'The sign-in service cannot be reached right now. Try again in a moment.', headers: { 'retry-after': '5' } };
    }
    throw e;
  }
}
