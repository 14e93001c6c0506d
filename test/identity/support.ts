/**
 * Identity test support: the embedded provider, a gateway and an echo backend
 * wired together on loopback, and a small cookie-keeping HTTP client that
 * signs in through the real pages (for tests that need a session but not a
 * whole browser).
 */
import type { GatewayOptions } from '../../src/gateway/server.js';
import { EmbeddedIdp, NATIVE_CLIENT_ID, type DemoUser } from '../../src/identity/provider/embeddedIdp.js';
import { request, startEchoBackend, startGateway, type EchoBackend, type SimpleResponse, type TestGateway } from '../support/harness.js';

export const SECRET_A = 'a'.repeat(20) + '-session-secret-one';
export const SECRET_B = 'b'.repeat(20) + '-session-secret-two';
export const CLIENT_SECRET = 'client-secret-for-tests-0123456789';

export const USERS: DemoUser[] = [
  { username: 'alice', password: 'alice-pw', name: 'Alice', email: 'alice@example.test', groups: ['engineering', 'everyone'], mfa: true },
  { username: 'bob', password: 'bob-pw', name: 'Bob', email: 'bob@example.test', groups: ['finance', 'everyone'], mfa: false },
  { username: 'carol', password: 'carol-pw', name: 'Carol', email: 'carol@example.test', groups: ['everyone'], mfa: false },
];

export interface Stack {
  idp: EmbeddedIdp;
  gw: TestGateway;
  backend: EchoBackend;
  codes: Map<string, string>;
  /** http://<host>.localhost:<gateway port> */
  origin(host: string): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  apps?: (backendUrl: string) => string;
  secrets?: string[];
  extraYaml?: string;
  /** more keys of the identity: section, indented by two spaces */
  identityYaml?: string;
  accessTokenTtlSec?: number;
  idTokenTtlSec?: number;
  audiences?: { audience: string; scopes: string[] }[];
  users?: DemoUser[];
  /** false: the config file is read only on reload(), so a test's explicit reload is the one that applies its edit */
  watch?: boolean;
  /** stages a test adds to every app, as a plugin's would be */
  compileHooks?: GatewayOptions['compileHooks'];
  /** gateway.publicUrl, where the app portal is (default http://localhost) */
  publicUrl?: string;
}

export function defaultApps(backend: string): string {
  return `
  - name: Web
    externalUrl: http://web.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    audience: api://web
  - name: Api
    externalUrl: http://api.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    audience: api://secret
    requiredScopes: [user_impersonation]
  - name: Finance
    externalUrl: http://finance.localhost/
    internalUrl: ${backend}/
    preAuth: oidc
    assignment: { groups: [finance], users: [carol] }
  - name: Open
    externalUrl: http://open.localhost/
    internalUrl: ${backend}/
    preAuth: passthrough
`;
}

export function gatewayYaml(issuer: string, secrets: string[], apps: string, extra = '', identityExtra = '', publicUrl = 'http://localhost'): string {
  return `gateway:
  publicUrl: ${publicUrl}
  listen: { http: 127.0.0.1:0 }
identity:
  issuer: ${issuer}
  clientId: drawbridge
  clientSecret: ${CLIENT_SECRET}
  clockTolerance: 5s
${identityExtra}
session:
  secrets:
${secrets.map((s) => `    - ${s}`).join('\n')}
${extra}
apps:${apps}`;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const codes = new Map<string, string>();
  const backend = await startEchoBackend();
  const idp = await EmbeddedIdp.start({
    clientId: 'drawbridge',
    clientSecret: CLIENT_SECRET,
    users: opts.users ?? USERS,
    audiences: opts.audiences ?? [
      { audience: 'api://web', scopes: ['read'] },
      { audience: 'api://secret', scopes: ['user_impersonation'] },
      { audience: 'api://other', scopes: ['user_impersonation'] },
    ],
    onOneTimeCode: (u, c) => codes.set(u, c),
    accessTokenTtlSec: opts.accessTokenTtlSec,
    idTokenTtlSec: opts.idTokenTtlSec,
  });
  const gw = await startGateway(gatewayYaml(idp.issuer, opts.secrets ?? [SECRET_A], (opts.apps ?? defaultApps)(backend.url), opts.extraYaml, opts.identityYaml, opts.publicUrl), { ...(opts.watch === false ? { watch: false } : {}), ...(opts.compileHooks ? { compileHooks: opts.compileHooks } : {}) });
  const origin = (host: string) => `http://${host}.localhost:${gw.port}`;
  for (const h of ['web', 'api', 'finance', 'open', 'other', 'app', 'prefix', 'portal']) {
    idp.allowRedirectUri(`${origin(h)}/.drawbridge/callback`);
    idp.allowPostLogoutUri(`${origin(h)}/.drawbridge/signed-out`);
  }
  return {
    idp,
    gw,
    backend,
    codes,
    origin,
    stop: async () => {
      await gw.stop();
      await idp.close();
      await backend.close();
    },
  };
}

/**
 * A user's access token for `resource`, as a native client gets one: the public client
 * drawbridge-native, authorization code + PKCE + resource indicator, signed in through the
 * provider's real pages (a one-time code from `codes` for users with MFA). It carries the user's
 * preferred_username and groups, and `scope` when the audience has it. The loopback redirect goes
 * to the provider's own port (RFC 8252: any port), where nothing answers but the code is in the URL.
 */
export async function userToken(s: { idp: EmbeddedIdp; codes?: Map<string, string> }, user: string, password: string, resource: string, scope = 'user_impersonation'): Promise<string> {
  const { calculatePKCECodeChallenge, randomPKCECodeVerifier } = await import('openid-client');
  const verifier = randomPKCECodeVerifier();
  const redirectUri = `http://127.0.0.1:${s.idp.port}/callback`;
  const auth = new URL(`${s.idp.issuer}/auth`);
  for (const [k, v] of Object.entries({ client_id: NATIVE_CLIENT_ID, response_type: 'code', scope: `openid ${scope}`, redirect_uri: redirectUri, resource, code_challenge: await calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state: 'st' })) auth.searchParams.set(k, v);
  const { url } = await new Browser().browse(auth.href, { user, password, code: () => s.codes?.get(user) });
  const code = new URL(url).searchParams.get('code');
  if (!code) throw new Error(`no authorization code for ${user}: ended at ${url}`);
  const res = await fetch(`${s.idp.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', client_id: NATIVE_CLIENT_ID, code, redirect_uri: redirectUri, code_verifier: verifier, resource }) });
  const json = (await res.json()) as { access_token?: string };
  if (!json.access_token) throw new Error(`no access token for ${user}: ${JSON.stringify(json)}`);
  return json.access_token;
}

/** A cookie-keeping client that talks to *.localhost through 127.0.0.1, like a browser without scripts. */
export class Browser {
  readonly jar = new Map<string, Map<string, string>>();
  /** every Set-Cookie header received, as sent */
  readonly setCookies: string[] = [];

  async get(url: string, headers: Record<string, string> = {}): Promise<SimpleResponse> {
    return this.send('GET', url, headers);
  }

  /** the Cookie header this browser sends to `host` (host:port), '' when it has none */
  cookieHeader(host: string): string {
    return [...(this.jar.get(host) ?? [])].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  async send(method: string, url: string, headers: Record<string, string> = {}, body?: string): Promise<SimpleResponse> {
    const u = new URL(url);
    const h: Record<string, string> = { host: u.host, accept: 'text/html', ...headers };
    const cookie = this.cookieHeader(u.host);
    if (cookie) h.cookie = cookie;
    const res = await request(`http://127.0.0.1:${u.port}${u.pathname}${u.search}`, { method, headers: h, body });
    for (const sc of [res.headers['set-cookie'] ?? []].flat()) {
      this.setCookies.push(sc);
      const [pair, ...attrs] = sc.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const jar = this.jar.get(u.host) ?? new Map<string, string>();
      this.jar.set(u.host, jar);
      if (attrs.some((a) => /max-age=0/i.test(a.trim())) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    return res;
  }

  /** Follows redirects; fills the provider's sign-in pages with these credentials. Returns the final response and its URL. */
  async browse(url: string, creds?: { user: string; password: string; code?: () => string | undefined }, maxHops = 20): Promise<{ res: SimpleResponse; url: string; hops: string[] }> {
    let current = url;
    const hops: string[] = [];
    let method = 'GET';
    let body: string | undefined;
    for (let i = 0; i < maxHops; i++) {
      hops.push(current);
      const res = await this.send(method, current, body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}, body);
      method = 'GET';
      body = undefined;
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        current = new URL(res.headers.location, current).href;
        continue;
      }
      const action = /<form method="post" action="([^"]+)"/.exec(res.body)?.[1]?.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
      if (res.status === 200 && action && creds && /\/(login|mfa)$/.test(action)) {
        const next = new URL(action, current).href;
        if (action.endsWith('/login')) body = new URLSearchParams({ username: creds.user, password: creds.password }).toString();
        else body = new URLSearchParams({ code: creds.code?.() ?? '' }).toString();
        method = 'POST';
        current = next;
        continue;
      }
      return { res, url: current, hops };
    }
    throw new Error(`too many redirects: ${hops.join(' -> ')}`);
  }
}

/**
 * The browser audit's payloads (through /.drawbridge/sign-in in Chromium, test/identity/browser.test.ts):
 * each must land on the app's own origin, its root or a same-app path. `origin` is the app's.
 */
export function auditPayloads(origin: string): string[] {
  const hostPort = new URL(origin).host;
  return [
    '//evil.example/', '/\\evil.example/', '/%5Cevil.example/', '%2F%2Fevil.example', '/%2F/evil.example', 'https://evil.example/', `http://${hostPort}@evil.example/`,
    `http://${hostPort}.evil.example/`, origin.replace('web.', 'other.') + '/', origin.toUpperCase() + '/x', 'http:evil.example', 'http:/\\/evil.example', '/\t/evil.example', ' //evil.example', 'javascript:alert(1)//',
    '/.drawbridge/sign-out', '/..//evil.example', '/./\\evil.example', '/%09/evil.example', '\\\\evil.example', '/pre/../../x', `http://${new URL(origin).hostname}/x`, `${origin}:80/x`, '/x#@evil.example', '/%E3%80%82evil', origin.replace('web.', 'web\u3002') + '/x',
  ];
}
