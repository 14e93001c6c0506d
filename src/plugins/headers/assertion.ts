/**
 * `headers.assertion`: a short-lived JWT of the identity, signed by the
 * gateway (ES256), so an app can verify who is calling without trusting the
 * network path: verify with the keys at /.well-known/drawbridge/jwks.json,
 * pin alg ES256, check iss (the gateway's publicUrl) and aud (the app's
 * externalUrl). Only identity claims go in; never a token or a secret.
 */
import { sign as cryptoSign } from 'node:crypto';
import type { JWK } from 'jose';
import type { InternalHandler } from '../../gateway/edge.js';
import { ASSERTION_CLAIMS } from '../../identity/claims.js';
import { PLUGIN_API_VERSION, type Decision, type Plugin, type RequestContext, type Stage } from '../../pipeline/stage.js';
import { AssertionKeyStore } from './assertionKeys.js';
import { GROUPS_INCOMPLETE_HEADER, groupsKnownIncomplete, stripNamesFor } from './identityHeaders.js';

export interface AssertionOptions {
  header: string;
  /** the gateway's publicUrl: the iss */
  issuer: string;
  /** seconds; default 60 */
  lifetime?: number;
}

export interface AssertionStage extends Stage {
  /** the public keys apps verify this stage's assertions with */
  jwks(): { keys: JWK[] };
}


export const identityAssertion: Plugin<AssertionOptions> = {
  name: 'identity-assertion',
  kind: 'headers',
  apiVersion: PLUGIN_API_VERSION,
  description: 'A signed JWT of the identity in a request header, verifiable at /.well-known/drawbridge/jwks.json.',
  optionsSchema: {
    type: 'object',
    properties: { header: { type: 'string', minLength: 1 }, issuer: { type: 'string', minLength: 1 }, lifetime: { type: 'integer', minimum: 5, maximum: 3600 } },
    required: ['header', 'issuer'],
    additionalProperties: false,
  },
  async create(options, context) {
    const header = options.header.toLowerCase();
    const lifetime = options.lifetime ?? 60;
    const audience = context.app.externalUrl;
    const store = AssertionKeyStore.for(context.stateDir);
    await store.ready(context.logger);
    const headers = new Map<string, string>();
    const headerFor = (kid: string) => {
      let h = headers.get(kid);
      if (!h) headers.set(kid, (h = Buffer.from(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' })).toString('base64url')));
      return h;
    };
    const stage: AssertionStage = {
      name: 'identity-assertion',
      kind: 'headers',
      jwks: () => store.jwks(),
      stripHeaders: stripNamesFor([options.header, GROUPS_INCOMPLETE_HEADER]),
      run(ctx: RequestContext): Decision {
        const id = ctx.identity;
        if (!id) return { kind: 'continue' };
        const { kid, key } = store.signingKey();
        const iat = Math.floor(context.now() / 1000);
        const claims: Record<string, unknown> = { iss: options.issuer, sub: id.user, aud: audience, iat, nbf: iat - 5, exp: iat + lifetime, jti: ctx.id };
        for (const c of ASSERTION_CLAIMS) if (id.claims[c] !== undefined) claims[c] = id.claims[c];
        claims.groups = [...id.groups];
        // Signed, for the reason identityHeaders.ts sends GROUPS_INCOMPLETE_HEADER: absent, the list is whole.
        if (groupsKnownIncomplete(id)) claims.groups_incomplete = true;
        claims.via = id.via;
        // A compact JWS (RFC 7515) signed with node:crypto: ES256 is P-256 + SHA-256 with the
        // signature as r||s (ieee-p1363), which is what JOSE expects, not DER.
        const signingInput = `${headerFor(kid)}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
        const jwt = `${signingInput}.${cryptoSign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
        return { kind: 'continue', setHeaders: { [header]: jwt } };
      },
    };
    return stage;
  },
};

/**
 * GET /.well-known/drawbridge/jwks.json on every host: the public keys of
 * every assertion stage in the live generation (empty when no app signs).
 */
export const jwksHandler: InternalHandler = (req, res, ctx) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  const keys = new Map<string, JWK>();
  for (const app of ctx.generation.apps.values()) {
    for (const s of app.stages) if (s.name === 'identity-assertion') for (const k of (s as AssertionStage).jwks().keys) keys.set(k.kid!, k);
  }
  const body = JSON.stringify({ keys: [...keys.values()] });
  // Short cache: apps pick up a new key well within the activation delay.
  res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300', 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
};
