/**
 * The embedded identity provider: FOR THE DEMO AND TESTS ONLY. A real,
 * certified OpenID provider (oidc-provider) with a handful of demo users kept
 * in memory, its own plain sign-in pages (password, then a one-time code for
 * users with MFA or when the client asks for acr_values=mfa), a client
 * registered for the gateway, and JWT access tokens for API audiences through
 * resource indicators. Never point a production gateway at it.
 */
import { listen } from '../../gateway/listen.js';
import { randomBytes, randomInt } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { errors, interactionPolicy } from 'oidc-provider';
import { memoryStore } from './memoryStore.js';

export interface DemoUser {
  username: string;
  password: string;
  name: string;
  email: string;
  groups: string[];
  /** signs in with a second step (a one-time code) */
  mfa: boolean;
  /** extra claims (device claims for conditional access tests...) */
  claims?: Record<string, unknown>;
}

export interface ApiAudience {
  audience: string;
  scopes: string[];
}

export interface EmbeddedIdpOptions {
  host?: string;
  port?: number;
  /** host name in the issuer URL (default the listen host); e.g. idp.localhost */
  issuerHost?: string;
  clientId: string;
  clientSecret: string;
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  users?: DemoUser[];
  audiences?: ApiAudience[];
  /** where the one-time codes go (the console in the demo) */
  onOneTimeCode?: (user: string, code: string) => void;
  accessTokenTtlSec?: number;
  /** ID token lifetime (default 1 h) */
  idTokenTtlSec?: number;
  /** accept any http://<loopback host>:<port>/.drawbridge/callback (the demo, where apps change while it runs) */
  allowLoopbackCallbacks?: boolean;
}

const LOOPBACK_CALLBACK = /^http:\/\/(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.localhost|127\.0\.0\.1)(?::\d{1,5})?\/\.drawbridge\/(?:callback|signed-out)$/;

export const MFA_ACR = 'mfa';
/** the public native client (authorization code + PKCE, loopback redirect) */
export const NATIVE_CLIENT_ID = 'drawbridge-native';
export const PASSWORD_ACR = 'pwd';

export function demoUsers(password: (u: string) => string = () => randomBytes(6).toString('base64url')): DemoUser[] {
  return [
    { username: 'alice', password: password('alice'), name: 'Alice Engineer', email: 'alice@example.test', groups: ['engineering', 'everyone'], mfa: true },
    { username: 'bob', password: password('bob'), name: 'Bob Finance', email: 'bob@example.test', groups: ['finance', 'everyone'], mfa: false },
    { username: 'carol', password: password('carol'), name: 'Carol Everyone', email: 'carol@example.test', groups: ['everyone'], mfa: false },
  ];
}

interface PendingMfa {
  user: DemoUser;
  code: string;
  exp: number;
  tries: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export class EmbeddedIdp {
  readonly users = new Map<string, DemoUser>();
  readonly redirectUris: Set<string>;
  readonly postLogoutUris: Set<string>;
  readonly audiences = new Map<string, ApiAudience>();
  /** the key set, newest (signing) key first */
  private keys: JWK[] = [];
  private provider: any;
  private server!: http.Server;
  private readonly pending = new Map<string, PendingMfa>();
  private readonly cookieKeys = [randomBytes(32).toString('base64url')];
  issuer = '';

  private constructor(private readonly opts: EmbeddedIdpOptions) {
    for (const u of opts.users ?? []) this.users.set(u.username, u);
    this.redirectUris = new Set(opts.redirectUris ?? []);
    this.postLogoutUris = new Set(opts.postLogoutRedirectUris ?? []);
    for (const a of opts.audiences ?? []) this.audiences.set(a.audience, a);
  }

  static async start(opts: EmbeddedIdpOptions): Promise<EmbeddedIdp> {
    const idp = new EmbeddedIdp(opts);
    idp.keys = [await newSigningKey()];
    idp.server = http.createServer((req, res) => void idp.handle(req, res));
    // (a port already taken rejects, so the demo says so in one line; unheard, the error event was a stack trace)
    await listen(idp.server, { port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' });
    const port = (idp.server.address() as AddressInfo).port;
    idp.issuer = `http://${opts.issuerHost ?? opts.host ?? '127.0.0.1'}:${port}`;
    idp.provider = idp.build();
    return idp;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Allows another redirect URI for the gateway client (apps added after start, ephemeral ports). */
  allowRedirectUri(uri: string): void {
    this.redirectUris.add(uri);
  }

  allowPostLogoutUri(uri: string): void {
    this.postLogoutUris.add(uri);
  }

  /** The public JWKS the provider serves. */
  publicKeys(): JWK[] {
    return this.keys.map(({ kty, kid, n, e, alg, use }) => ({ kty, kid, n, e, alg, use }));
  }

  /**
   * Key rotation: a new signing key goes first; the old ones stay published
   * unless `dropOld`. Sessions at the provider survive (shared memory store).
   */
  async rotateKeys(opts: { dropOld?: boolean } = {}): Promise<string> {
    const key = await newSigningKey();
    this.keys = opts.dropOld ? [key] : [key, ...this.keys];
    this.provider = this.build();
    return key.kid!;
  }

  /** An app-only JWT access token (no user) from the real token endpoint (client_credentials + resource indicator); the gateway refuses it. */
  async clientCredentialsToken(audience: string, scope?: string): Promise<string> {
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource: audience, ...(scope ? { scope } : {}) });
    const res = await fetch(`${this.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${this.cliClientId}:${this.opts.clientSecret}`).toString('base64')}` },
      body,
    });
    const json = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
    if (!json.access_token) throw new Error(`token request failed: ${json.error}: ${json.error_description}`);
    return json.access_token;
  }

  /** The client for scripts acting as themselves (client_credentials: app-only tokens); same secret as the gateway client. */
  get cliClientId(): string {
    return `${this.opts.clientId}-cli`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** requests per path (tests count JWKS fetches with it) */
  readonly hits = new Map<string, number>();

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', this.issuer);
      this.hits.set(url.pathname, (this.hits.get(url.pathname) ?? 0) + 1);
      const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|mfa))?$/.exec(url.pathname);
      if (m) return await this.interaction(req, res, m[1]!, m[2]);
      this.provider.callback()(req, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Sign-in problem', `<p>${esc((e as Error).message)}</p>`));
    }
  }

  private async interaction(req: IncomingMessage, res: ServerResponse, uid: string, step?: string): Promise<void> {
    const details = await this.provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('this sign-in page belongs to another sign-in');
    const acrValues = String(details.params.acr_values ?? '').split(' ');
    const wantsMfa = acrValues.includes(MFA_ACR);
    if (details.prompt.name !== 'login') {
      // Demo clients are first party: consent is granted without a screen (native clients are always asked, RFC 8252).
      const { Grant } = this.provider;
      const grant = details.grantId ? await Grant.find(details.grantId) : new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      this.grantEverything(grant, details.params.resource);
      const grantId = await grant.save();
      return this.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    if (req.method === 'GET') return send(res, 200, loginPage(uid, details.params.login_hint, wantsMfa));
    const form = await readForm(req);
    if (step === 'login') {
      const user = this.users.get(String(form.get('username') ?? '').trim().toLowerCase());
      if (!user || !safeEqual(user.password, String(form.get('password') ?? ''))) return send(res, 200, loginPage(uid, form.get('username') ?? undefined, wantsMfa, 'The user name or password is not correct.'));
      if (user.mfa || wantsMfa) {
        const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
        this.pending.set(uid, { user, code, exp: Date.now() + 5 * 60_000, tries: 0 });
        (this.opts.onOneTimeCode ?? ((u, c) => process.stderr.write(`[embedded IdP] one-time code for ${u}: ${c}\n`)))(user.username, code);
        return send(res, 200, codePage(uid, user.username));
      }
      return this.finishLogin(req, res, user, false);
    }
    if (step === 'mfa') {
      const p = this.pending.get(uid);
      if (!p || p.exp < Date.now() || ++p.tries > 5) {
        this.pending.delete(uid);
        return send(res, 200, loginPage(uid, undefined, wantsMfa, 'The one-time code expired. Sign in again.'));
      }
      if (!safeEqual(p.code, String(form.get('code') ?? '').trim())) return send(res, 200, codePage(uid, p.user.username, 'That code is not correct.'));
      this.pending.delete(uid);
      return this.finishLogin(req, res, p.user, true);
    }
    send(res, 404, page('Not found', '<p>Nothing here.</p>'));
  }

  private async finishLogin(req: IncomingMessage, res: ServerResponse, user: DemoUser, mfa: boolean): Promise<void> {
    await this.provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.username, acr: mfa ? MFA_ACR : PASSWORD_ACR, amr: mfa ? ['pwd', 'otp', 'mfa'] : ['pwd'], remember: true } },
      { mergeWithLastSubmission: false },
    );
  }

  /** The names of the users' extra claims (fixed when the provider is built). */
  private extraClaimNames(): string[] {
    return [...new Set([...this.users.values()].flatMap((u) => Object.keys(u.claims ?? {})))];
  }

  private grantEverything(grant: any, resources: unknown): void {
    grant.addOIDCScope('openid profile email offline_access');
    grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'groups', 'email', 'acr', 'amr', 'auth_time', '_claim_names', '_claim_sources', 'hasgroups', ...this.extraClaimNames()]);
    for (const resource of [resources ?? []].flat() as string[]) {
      const api = this.audiences.get(resource);
      if (api) grant.addResourceScope(resource, api.scopes.join(' '));
    }
  }

  private build(): any {
    const policy = interactionPolicy.base();
    const { Check } = interactionPolicy;
    policy.get('login').checks.add(
      new Check('acr_values_mfa', 'a multi-factor sign-in is required', (ctx: any) => {
        const acr = String(ctx.oidc.params.acr_values ?? '').split(' ');
        if (acr.includes(MFA_ACR) && ctx.oidc.session.acr !== MFA_ACR && ctx.oidc.result?.login?.acr !== MFA_ACR) return Check.REQUEST_PROMPT;
        return Check.NO_NEED_TO_PROMPT;
      }),
    );
    const ttl = this.opts.accessTokenTtlSec ?? 3600;
    const self = this;
    const provider = new Provider(this.issuer, {
      clients: [
        {
          client_id: this.opts.clientId,
          client_secret: this.opts.clientSecret,
          redirect_uris: [...this.redirectUris].length ? [...this.redirectUris] : [`${this.issuer}/unused`],
          post_logout_redirect_uris: [...this.postLogoutUris],
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
        },
        { client_id: this.cliClientId, client_secret: this.opts.clientSecret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic' },
        // A public native client (RFC 8252: loopback redirect on any port) that gets user tokens for an API audience.
        { client_id: NATIVE_CLIENT_ID, application_type: 'native', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: ['http://127.0.0.1/callback'] },
      ],
      adapter: memoryStore(),
      jwks: { keys: this.keys },
      cookies: { keys: this.cookieKeys },
      pkce: { required: () => true },
      acrValues: [PASSWORD_ACR, MFA_ACR],
      conformIdTokenClaims: false,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      // A user's extra claims (roles, department, device claims) go in the ID token too, as Entra's optional claims do.
      claims: { openid: ['sub', 'acr', 'amr', 'auth_time'], profile: ['name', 'preferred_username', 'groups', '_claim_names', '_claim_sources', 'hasgroups', ...this.extraClaimNames()], email: ['email'], sid: null },
      findAccount: async (_ctx: unknown, id: string) => {
        const user = self.users.get(id);
        if (!user) return undefined;
        return { accountId: id, claims: async () => ({ sub: id, preferred_username: user.username, name: user.name, email: user.email, groups: user.groups, ...user.claims }) };
      },
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}`, policy },
      loadExistingGrant: async (ctx: any) => {
        const grantId = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
        const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        self.grantEverything(grant, ctx.oidc.params.resource);
        await grant.save();
        return grant;
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: async (ctx: any, form: string) => {
            ctx.body = page('Signing out', `${form}<p>Signing you out of the demo provider...</p><button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button><script>var f=document.getElementById('op.logoutForm');var i=document.createElement('input');i.type='hidden';i.name='logout';i.value='yes';f.appendChild(i);f.submit();</script>`);
          },
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf?.[0],
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx: unknown, resource: string) => {
            const api = self.audiences.get(resource);
            if (!api) throw new errors.InvalidTarget(`unknown resource ${resource}`);
            return { scope: api.scopes.join(' '), audience: resource, accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
          },
        },
      },
      // Scopes only in RFC 9068's `scope` (oidc-provider's own): no Entra-style `scp` beside it, so the tests
      // prove the gateway reads the claim that oidc-provider, Keycloak and Auth0 send.
      // A user's access token names the user and groups, as Entra's do, so assignment works for native clients too.
      // The sign-in's amr and acr too, as Entra's access tokens have them, so a native client that did MFA
      // meets requireMfa: they are on the grant the token comes from (its code or refresh token), not on the token.
      extraTokenClaims: async (ctx: { oidc?: { entities?: Record<string, { amr?: string[]; acr?: string } | undefined> } }, token: { resourceServer?: unknown; accountId?: string }) => {
        if (!token.resourceServer) return undefined;
        const user = token.accountId ? self.users.get(token.accountId) : undefined;
        const grant = ctx.oidc?.entities?.AuthorizationCode ?? ctx.oidc?.entities?.RefreshToken;
        return {
          ...(user ? { preferred_username: user.username, name: user.name, email: user.email, groups: user.groups, ...(grant?.amr ? { amr: grant.amr } : {}), ...(grant?.acr ? { acr: grant.acr } : {}), ...user.claims } : {}),
        };
      },
      ttl: { AccessToken: ttl, ClientCredentials: ttl, IdToken: this.opts.idTokenTtlSec ?? 3600, Interaction: 600, Session: 86400, Grant: 86400, AuthorizationCode: 60 },
      renderError: async (ctx: any, out: Record<string, string>) => {
        ctx.type = 'html';
        ctx.body = page('Sign-in error', `<p>${esc(out.error ?? 'error')}: ${esc(out.error_description ?? '')}</p>`);
      },
    });
    // Redirect URIs can be added while running (apps added after start, tests on ephemeral ports).
    const Client = provider.Client;
    const redirectAllowed = Client.prototype.redirectUriAllowed;
    Client.prototype.redirectUriAllowed = function (this: any, value: string) {
      if (this.clientId === self.opts.clientId && (self.redirectUris.has(value) || (self.opts.allowLoopbackCallbacks && LOOPBACK_CALLBACK.test(value) && value.endsWith('/callback')))) return true;
      return redirectAllowed.call(this, value);
    };
    const logoutAllowed = Client.prototype.postLogoutRedirectUriAllowed;
    Client.prototype.postLogoutRedirectUriAllowed = function (this: any, value: string) {
      if (this.clientId === self.opts.clientId && (self.postLogoutUris.has(value) || (self.opts.allowLoopbackCallbacks && LOOPBACK_CALLBACK.test(value) && value.endsWith('/signed-out')))) return true;
      return logoutAllowed.call(this, value);
    };
    return provider;
  }
}

async function newSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && x.equals(y);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16_384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;background:#f3f2f1;margin:0}main{max-width:24rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:4px;box-shadow:0 1px 4px #0002}label{display:block;margin:.75rem 0 .25rem}input{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1.5rem}.warn{background:#fff4ce;padding:.5rem;font-size:.85rem}.err{color:#a4262c}</style>
</head><body><main><p class="warn">Drawbridge embedded identity provider: for the demo and tests only.</p><h1>${esc(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid: string, hint: string | undefined, mfa: boolean, error?: string): string {
  return page(
    'Sign in',
    `${error ? `<p class="err" role="alert">${esc(error)}</p>` : ''}${mfa ? '<p>This app asks for a multi-factor sign-in.</p>' : ''}
<form method="post" action="/interaction/${esc(uid)}/login"><label for="username">User name</label><input id="username" name="username" autocomplete="username" autofocus value="${esc(hint ?? '')}"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password"><button type="submit">Sign in</button></form>`,
  );
}

function codePage(uid: string, user: string, error?: string): string {
  return page(
    'Verify your identity',
    `${error ? `<p class="err" role="alert">${esc(error)}</p>` : ''}<p>Enter the one-time code sent to ${esc(user)} (printed on the provider's console).</p>
<form method="post" action="/interaction/${esc(uid)}/mfa"><label for="code">Code</label><input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" autofocus><button type="submit">Verify</button></form>`,
  );
}
