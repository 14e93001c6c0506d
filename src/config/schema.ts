/**
 * The one source of truth for gateway.config.yaml: these TypeBox definitions
 * are JSON Schema objects at run time (printed by `drawbridge schema`, used by
 * the validator) and TypeScript types at compile time (`Static<...>`).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DURATION_PATTERN } from './duration.js';

const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
/** The asymmetric signature algorithms jose verifies JWTs with: what identity.algorithms may pin. */
export const SIGNATURE_ALGORITHMS: readonly string[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** identity.algorithms when the config leaves it out */
export const DEFAULT_ALGORITHMS: readonly string[] = ['RS256', 'PS256', 'ES256'];
/** identity.scopes when the config leaves it out */
export const DEFAULT_SCOPES: readonly string[] = ['openid', 'profile', 'email'];

export const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

const Duration = (description: string, def?: string) =>
  Type.String({ pattern: DURATION_PATTERN, description: `${description} A duration such as 90s, 15m, 8h, 30d or 1h30m.`, ...(def ? { default: def } : {}) });

const StringList = (description: string) => Type.Array(Type.String({ minLength: 1 }), { description, uniqueItems: true });

const Listen = (description: string) =>
  Type.Union(
    [
      Type.Integer({ minimum: 0, maximum: 65535, description: 'A port on all interfaces.' }),
      Type.String({ pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+):[0-9]{1,5}$', description: 'host:port, e.g. 127.0.0.1:9090 or [::1]:9090.' }),
    ],
    { description },
  );

const CidrList = (description: string) => Type.Array(Type.String({ minLength: 1 }), { description });

/** gateway.audit's defaults: the AuditLog uses them too */
export const AUDIT_ROTATE_AT_MIB = 10;
export const AUDIT_KEEP_FILES = 5;

export const GatewaySection = Type.Object(
  {
    publicUrl: Type.String({ description: "The gateway's own public URL: the iss of identity assertions, the port the http listener redirects to (when it is https), and a name in the connector listener's certificate, and where the app portal is served when identity: is configured and no app is published there (its sign-in callback is /.drawbridge/callback on that host). Apps' sign-in callbacks and sign-out are on each app's own host." }),
    listen: Type.Object(
      {
        https: Type.Optional(Listen('Public HTTPS endpoint; TLS is terminated here with gateway.tls.')),
        http: Type.Optional(Listen('Plain HTTP endpoint. When https is also set it only redirects to https (except /.well-known/acme-challenge/); otherwise it serves apps itself.')),
      },
      { additionalProperties: false, description: 'Public listeners. At least one of https or http.' },
    ),
    tls: Type.Optional(
      Type.Object(
        {
          cert: Type.String({ minLength: 1, description: 'PEM certificate chain for the https listener (path relative to this file). Re-read on change.' }),
          key: Type.String({ minLength: 1, description: 'PEM private key for the https listener (path relative to this file). Re-read on change.' }),
        },
        { additionalProperties: false, description: 'Server certificate for the https listener.' },
      ),
    ),
    trustedProxies: Type.Optional(CidrList('Peers (CIDR) allowed to contribute X-Forwarded-For / -Proto / -Host. Everyone else has those headers replaced.')),
    admin: Type.Optional(
      Type.Object(
        { listen: Listen('Admin endpoint: /healthz, /readyz, /metrics, /connectors, without authentication. Keep it on loopback or a private address (127.0.0.1:9090): a bare port binds every interface, like every listener, and lint warns about it.') },
        { additionalProperties: false, description: 'The admin listener: health, readiness, metrics and connector status.' },
      ),
    ),
    stateDir: Type.Optional(Type.String({ minLength: 1, default: './state', description: 'Embedded state: connector CA, issued certificates, used enrollment tokens, signing keys, audit log.' })),
    audit: Type.Optional(
      Type.Object(
        {
          rotateAtMiB: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, default: AUDIT_ROTATE_AT_MIB, description: 'Start a new stateDir/audit/audit.log when the live one reaches this many MiB.' })),
          keepFiles: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: AUDIT_KEEP_FILES, description: 'Rotated files kept (audit.log.1 ... audit.log.N); the oldest is deleted at the next rotation. What the trail holds is rotateAtMiB x (keepFiles + 1), filled at the rate requests come in, anonymous ones included: ship the file off the host if it must outlive a flood.' })),
        },
        { additionalProperties: false, description: 'How much of the audit trail stays on disk. Applied on reload.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'The gateway process: listeners, TLS and trust.' },
);

export const IdentitySection = Type.Object(
  {
    issuer: Type.String({ description: 'OpenID Connect issuer; discovery is read from {issuer}/.well-known/openid-configuration.' }),
    clientId: Type.String({ minLength: 1, description: 'The client id registered for the gateway at the provider.' }),
    clientSecret: Type.Optional(Type.String({ description: 'The client secret; use ${env:NAME} or ${file:path}, never a literal.' })),
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { default: [...DEFAULT_SCOPES], description: 'Scopes asked for at sign-in; must include openid.' })),
    claims: Type.Optional(
      Type.Object(
        {
          user: Type.Optional(Type.String({ minLength: 1, description: 'Claim that names the user; when set, only this claim counts (a token without it is refused). Unset: preferred_username, then upn, email, sub.' })),
          groups: Type.Optional(Type.String({ minLength: 1, default: 'groups', description: 'Claim that lists the user\'s groups.' })),
        },
        { additionalProperties: false, description: 'Which token claims name the user and list the groups.' },
      ),
    ),
    clockTolerance: Type.Optional(Duration('Allowed clock skew when checking token lifetimes, at most 10m: a token is still accepted this long after it expires, so it is meant for clocks that drift by seconds, not to stretch a token\'s lifetime.', '60s')),
    algorithms: Type.Optional(
      Type.Array(Type.Union(SIGNATURE_ALGORITHMS.map((a) => Type.Literal(a))), {
        default: [...DEFAULT_ALGORITHMS],
        minItems: 1,
        uniqueItems: true,
        description: 'Token signature algorithms accepted; anything else (none, HMAC) is refused.',
      }),
    ),
    mfaAcrValues: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        uniqueItems: true,
        default: ['mfa'],
        description: 'acr values that count as multi-factor for requireMfa (an amr containing "mfa" always counts). The first is what a step-up asks the provider for (acr_values).',
      }),
    ),
    compliantDevice: Type.Optional(
      Type.Object(
        {
          claim: Type.Optional(Type.String({ minLength: 1, default: 'device_compliant', description: 'Claim that says the device is compliant.' })),
          equals: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Boolean()], { default: true, description: 'Value the claim must have.' })),
        },
        { additionalProperties: false, description: 'What requireCompliantDevice checks; default: the claim device_compliant equals true.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'The OpenID Connect provider that pre-authenticates users.' },
);

/**
 * The cookie keys of session.cookie (with its defaults) or of an app's `cookies`, where a key left
 * out takes session.cookie's value: an editor showing "default 8h" there would be wrong.
 */
function cookieKeys(forApp: boolean) {
  const d = <T>(value: T, description: string) => (forApp ? { description: `${description} Default: session.cookie's.` } : { default: value, description });
  return {
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]+$', ...d('drawbridge_session', 'Cookie name, without a __Host- or __Secure- prefix: the gateway adds __Host- itself where the app lives at the host root over https.') })),
    lifetime: Type.Optional(Duration(d('8h', 'How long a session lasts after sign-in; 1s to 400d (browsers keep no cookie longer).').description, forApp ? undefined : '8h')),
    httpOnly: Type.Optional(Type.Boolean(d(true, 'Hide the cookie from scripts.'))),
    secure: Type.Optional(Type.Boolean(d(true, 'Send the cookie over HTTPS only.'))),
    persistent: Type.Optional(Type.Boolean(d(false, 'false: a session cookie the browser drops on close; true: kept until it expires.'))),
    endWithIdToken: Type.Optional(Type.Boolean(d(false, "true: a session also ends when the ID token of its sign-in expires (as Entra application proxy's cookie does), so the browser goes back to the identity provider, silently while the provider's own session lasts, and groups, claims and a disabled account are read again; a session still lasts at least a minute. false: the session lasts `lifetime`, whatever the token says."))),
    sameSite: Type.Optional(Type.Union([Type.Literal('lax'), Type.Literal('strict'), Type.Literal('none')], d('lax', 'SameSite attribute of the session cookie.'))),
  };
}

export const CookieOptions = Type.Object(cookieKeys(false), { additionalProperties: false });

export const SessionSection = Type.Object(
  {
    secrets: Type.Array(Type.String(), { minItems: 1, description: 'Session encryption secrets (at least 32 characters each). The first encrypts; all decrypt, for rotation.' }),
    cookie: Type.Optional(Type.Object(CookieOptions.properties, { additionalProperties: false, description: 'The session cookie: name, lifetime and attributes.' })),
  },
  { additionalProperties: false, description: 'Encrypted session cookies for browser sign-in.' },
);

export const ConnectorsSection = Type.Object(
  {
    listen: Listen("Where connectors dial out to (TLS; mutual TLS after enrollment). May be gateway.listen.https's own address, written the same: the two then share its port, connectors being told apart by their TLS ALPN id."),
    certificateLifetime: Type.Optional(Duration('Lifetime of connector client certificates, 1m to 365d; connectors renew at two thirds of it.', '30d')),
    revoked: Type.Optional(StringList('Connector ids that may no longer connect; their live channels are closed on reload.')),
    serverNames: Type.Optional(
      StringList(
        "More names (DNS names or IP addresses) connectors may dial the listener by, such as a load balancer's: they go into the listener's certificate, which always names localhost, the loopback addresses, this host's name, publicUrl's host and the listen address. A change is applied on reload.",
      ),
    ),
  },
  { additionalProperties: false, description: 'The endpoint that outbound-only connectors dial.' },
);

export const ConnectorGroup = Type.Object(
  {
    loadBalancing: Type.Optional(Type.Union([Type.Literal('least-inflight'), Type.Literal('round-robin')], { default: 'least-inflight', description: 'How requests are spread over the group\'s live connectors.' })),
  },
  { additionalProperties: false, description: 'A connector group: the connectors enrolled in it reach the apps that name it.' },
);

const Weekday = Type.Union(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => Type.Literal(d)));

/**
 * A condition's list is never empty: an empty one matches no request, so the policy would never
 * apply (a block emptied by a template or a review lets everyone in) while looking configured.
 */
export const NOT_EMPTY_CONDITION = ' Not empty: leave the key out for no condition.';
const ConditionList = <T extends TSchema>(item: T, description: string) => Type.Array(item, { description: description + NOT_EMPTY_CONDITION, minItems: 1, uniqueItems: true });
/** a path glob starts with /, as request paths do; the policy engine refuses one that does not */
export const PATH_GLOB_PATTERN = '^/';

export const PolicyConditions = Type.Object(
  {
    users: Type.Optional(ConditionList(Type.String({ minLength: 1 }), 'Users this policy applies to.')),
    groups: Type.Optional(ConditionList(Type.String({ minLength: 1 }), 'Groups this policy applies to (any of them).')),
    apps: Type.Optional(ConditionList(Type.String({ minLength: 1 }), 'App names this policy applies to.')),
    locations: Type.Optional(ConditionList(Type.String({ minLength: 1 }), 'Named locations the client address must be in.')),
    notLocations: Type.Optional(ConditionList(Type.String({ minLength: 1 }), 'Named locations the client address must not be in.')),
    clientApps: Type.Optional(ConditionList(Type.Union([Type.Literal('browser'), Type.Literal('native')]), 'browser (session cookie) or native (bearer token).')),
    devicePlatforms: Type.Optional(ConditionList(Type.Union(['windows', 'macos', 'linux', 'ios', 'android', 'other'].map((p) => Type.Literal(p))), 'Platforms, read from the User-Agent.')),
    methods: Type.Optional(ConditionList(Type.String({ pattern: '^[A-Z]+$' }), 'HTTP methods.')),
    paths: Type.Optional(
      ConditionList(Type.String({ pattern: PATH_GLOB_PATTERN }), "Path globs, starting with /, matched on the normalized path as the client requests it, the app's externalUrl prefix included (* within a segment, ** across segments)."),
    ),
    time: Type.Optional(
      Type.Object(
        {
          days: Type.Optional(ConditionList(Weekday, 'Days of the week.')),
          hours: Type.Optional(Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$', description: 'A time window, e.g. 08:00-18:00.' })),
          timezone: Type.String({ description: 'IANA timezone, e.g. Europe/Berlin.' }),
        },
        { additionalProperties: false, description: 'When in local time the policy applies.' },
      ),
    ),
    claims: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Object(
          {
            equals: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
            includes: Type.Optional(Type.String()),
            exists: Type.Optional(Type.Boolean()),
          },
          // An empty condition has nothing to test: the policy engine refuses it.
          { additionalProperties: false, minProperties: 1 },
        ),
        { description: 'Conditions on any identity claim: equals, includes (for arrays) or exists; each names at least one.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'All listed conditions must match for the policy to apply.' },
);

export const Policy = Type.Object(
  {
    when: Type.Optional(PolicyConditions),
    grant: Type.Optional(
      Type.Union([Type.Literal('block'), Type.Literal('allow'), Type.Literal('requireMfa'), Type.Literal('requireCompliantDevice')], {
        description: 'What applies when the conditions match: block wins over everything; requirements add up.',
      }),
    ),
    session: Type.Optional(
      Type.Object(
        { signInFrequency: Type.Optional(Duration('Users whose sign-in is older must sign in again; at least 1s.')) },
        { additionalProperties: false, description: 'Session controls that apply when the conditions match.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'A conditional-access policy.' },
);

export const App = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN, description: 'Unique app name (used in policies, logs and metrics).' }),
    externalUrl: Type.String({ description: 'Public URL; host (a leading *. wildcard allowed) and path prefix route requests to this app.' }),
    internalUrl: Type.String({ description: 'Where the app lives inside the private network (http or https).' }),
    tls: Type.Optional(
      Type.Object(
        {
          cert: Type.String({ minLength: 1, description: "PEM certificate chain for the externalUrl's host (path relative to this file). Re-read on change." }),
          key: Type.String({ minLength: 1, description: 'PEM private key of that certificate (path relative to this file). Re-read on change.' }),
        },
        {
          additionalProperties: false,
          description: "The certificate of the app's own domain (a custom domain): the https listener serves it, by SNI, to clients that ask for the externalUrl's host (a *. host: any one name under it); other hosts get gateway.tls. Apps on one host share one certificate. https externalUrls on a DNS name only (clients send no SNI for an IP address).",
        },
      ),
    ),
    connectorGroup: Type.Optional(Type.String({ description: 'Connector group that reaches the app. Without it the gateway connects directly.' })),
    preAuth: Type.Optional(Type.Union([Type.Literal('oidc'), Type.Literal('passthrough')], { default: 'oidc', description: 'oidc: sign-in or bearer token required; passthrough: no sign-in (location rules still apply).' })),
    audience: Type.Optional(Type.String({ minLength: 1, description: 'The aud that bearer tokens from native clients must carry.' })),
    requiredScopes: Type.Optional(StringList('Scopes a bearer token must grant, in its scope (RFC 9068), scp or roles claim.')),
    forwardBearerToken: Type.Optional(Type.Boolean({ default: false, description: 'Send the client\'s verified bearer token on to the app (off: the gateway removes Authorization).' })),
    assignment: Type.Optional(
      Type.Object(
        { users: Type.Optional(StringList('Users assigned to the app.')), groups: Type.Optional(StringList('Groups assigned to the app.')) },
        { additionalProperties: false, description: 'Who may use the app; unassigned users get 403.' },
      ),
    ),
    visibleToUsers: Type.Optional(Type.Boolean({ default: true, description: 'Listed in the app portal (at gateway.publicUrl) for the users its assignment admits; false hides it there (APIs). Access is unchanged either way.' })),
    conditionalAccess: Type.Optional(StringList('Names of policies that apply to this app.')),
    headers: Type.Optional(
      Type.Object(
        {
          forwarded: Type.Optional(Type.Boolean({ default: true, description: 'Send X-Forwarded-For (client IP appended), X-Forwarded-Proto and X-Forwarded-Host.' })),
          identity: Type.Optional(
            Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), Type.String({ minLength: 1, description: 'user, groups, email, name, or the name of a claim.' }), {
              additionalProperties: false,
              description: 'Header-based SSO: header name -> identity field (user, groups, email, name) or claim. Same-named incoming headers are always stripped.',
            }),
          ),
          assertion: Type.Optional(Type.String({ pattern: HEADER_NAME_PATTERN, description: 'Header that carries a signed JWT of the identity, verifiable at /.well-known/drawbridge/jwks.json.' })),
        },
        { additionalProperties: false, description: 'Headers the gateway sends to the app: forwarding headers and the signed-in identity.' },
      ),
    ),
    backendTimeout: Type.Optional(
      Type.Union([Type.Literal('default'), Type.Literal('long'), Type.String({ pattern: DURATION_PATTERN })], {
        default: 'default',
        description: 'How long to wait for the app: default (85s), long (180s) or a duration, for its response to begin and for each further piece of it. On expiry the client gets 504, or, once the response has begun, its connection is cut. It bounds a stalled client too: a request body with no bytes for that long gets 408, and a client that takes no response bytes for that long is disconnected.',
      }),
    ),
    backend: Type.Optional(
      Type.Object(
        {
          tls: Type.Optional(
            Type.Object(
              {
                ca: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle that signs the internal certificate.' })),
                verify: Type.Optional(Type.Boolean({ default: true, description: 'Validate the internal certificate (on by default).' })),
                serverName: Type.Optional(Type.String({ description: 'SNI / name to check, when it differs from the internal URL host.' })),
              },
              { additionalProperties: false, description: 'TLS to an https internal URL.' },
            ),
          ),
        },
        { additionalProperties: false, description: 'How the gateway or connector talks to the internal URL.' },
      ),
    ),
    translateUrls: Type.Optional(
      Type.Object(
        {
          headers: Type.Optional(Type.Boolean({ default: true, description: 'Rewrite internal URLs to external ones in response headers (Location, Content-Location, Refresh, Link) and the Path and Domain of Set-Cookie.' })),
          body: Type.Optional(Type.Boolean({ default: false, description: 'Rewrite the internal URL to the external one in HTML, XHTML, CSS and JavaScript bodies (streamed; the app is asked for uncompressed bodies, and a compressed one passes untouched).' })),
        },
        { additionalProperties: false, description: 'Rewrite the app\'s internal URLs to its external URL in responses.' },
      ),
    ),
    websockets: Type.Optional(Type.Boolean({ default: false, description: 'Allow WebSocket upgrades (after the pipeline ran).' })),
    websocketOrigins: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          "Other origins (scheme://host[:port]) whose pages may open this app's WebSockets with the user's session cookie. By default only the app's own origin may: a page elsewhere on the same site (another app's host) would otherwise get a WebSocket as the signed-in user.",
      }),
    ),
    cookies: Type.Optional(Type.Object(cookieKeys(true), { additionalProperties: false, description: 'Session cookie settings for this app, over those in session.cookie.' })),
    sso: Type.Optional(
      Type.Object(
        {
          plugin: Type.String({ minLength: 1, description: 'Name of an sso plugin listed under plugins: (none is built in).' }),
          options: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Options checked against the plugin\'s own schema.' })),
        },
        { additionalProperties: false, description: 'Single sign-on to the app.' },
      ),
    ),
  },
  { additionalProperties: false, description: 'A published app.' },
);

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String({ description: 'JSON Schema of this file, for editors; the gateway ignores it.' })),
    gateway: GatewaySection,
    identity: Type.Optional(IdentitySection),
    session: Type.Optional(SessionSection),
    connectors: Type.Optional(ConnectorsSection),
    connectorGroups: Type.Optional(Type.Record(Type.String({ pattern: NAME_PATTERN }), ConnectorGroup, { additionalProperties: false, description: 'Connector groups by name.' })),
    locations: Type.Optional(Type.Record(Type.String({ pattern: NAME_PATTERN }), CidrList('CIDR ranges (IPv4 or IPv6).'), { additionalProperties: false, description: 'Named locations for conditional access.' })),
    policies: Type.Optional(Type.Record(Type.String({ pattern: NAME_PATTERN }), Policy, { additionalProperties: false, description: 'Conditional-access policies by name.' })),
    plugins: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Extra plugins: a path (relative to this file) or a package name.' })),
    apps: Type.Array(App, { description: 'Published apps.' }),
  },
  {
    additionalProperties: false,
    $id: 'https://drawbridge.dev/schema/gateway.config.json',
    title: 'Drawbridge gateway configuration',
    description: 'gateway.config.yaml: apps, pre-authentication, conditional access, headers, connector groups and plugins.',
  },
);

export type RawConfig = Static<typeof ConfigSchema>;
export type AppConfig = Static<typeof App>;
export type PolicyConfig = Static<typeof Policy>;
export type CookieConfig = Static<typeof CookieOptions>;

/** The JSON Schema of the whole file, with plugins' option schemas where known. */
export function jsonSchema(pluginOptionSchemas: Record<string, TSchema> = {}): Record<string, unknown> {
  // $schema first: editors and readers look for the dialect at the top.
  const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', ...structuredClone(ConfigSchema) } as Record<string, unknown>;
  const names = Object.keys(pluginOptionSchemas);
  if (names.length) {
    const app = (schema.properties as any).apps.items;
    app.allOf = names.map((name) => ({
      if: { properties: { sso: { properties: { plugin: { const: name } }, required: ['plugin'] } }, required: ['sso'] },
      then: { properties: { sso: { properties: { options: pluginOptionSchemas[name] } } } },
    }));
  }
  return acceptReferences(JSON.parse(JSON.stringify(schema)));
}

/**
 * A whole-value ${env:...} or ${file:...} reference, as an editor sees it: lint resolves it and
 * reads `http: ${env:PORT}` as the port; the schema the modeline points at flagged it.
 */
const REFERENCE = { type: 'string', pattern: '^\\$\\{(env|file):[^}]+\\}$', description: 'A ${env:NAME} or ${file:path} reference, resolved when the gateway loads the file.' };
/**
 * Where a string of a given form is accepted (host:port, a duration), a reference may be part of
 * it (`127.0.0.1:${env:PORT}`): only the resolved text can be checked, and lint does that.
 */
const PARTIAL_REFERENCE = { type: 'string', pattern: '\\$\\{(env|file):[^}]+\\}', description: 'Holds a ${env:NAME} or ${file:path} reference, whole or in part (127.0.0.1:${env:PORT}); lint checks the value it resolves to.' };
/** kept on the outer schema, where editors look for them */
const ANNOTATIONS = new Set(['description', 'default', 'title', 'examples', 'deprecated']);
/** keywords whose value is a schema, or a list or map of them (not `if`: it tests, it does not allow) */
const SUBSCHEMAS = ['properties', 'patternProperties', 'additionalProperties', 'items', 'prefixItems', 'anyOf', 'oneOf', 'allOf', 'then', 'else'];

/** Each value a reference's text would fail (a number, a boolean, a patterned string) also accepts a reference. */
function acceptReferences(node: any): any {
  if (!node || typeof node !== 'object') return node;
  if (Array.isArray(node)) return node.map(acceptReferences);
  if (refusesReference(node)) {
    const reference = (node.anyOf ?? [node]).some((b: any) => b.type === 'string' && b.pattern) ? PARTIAL_REFERENCE : REFERENCE;
    if (node.anyOf) return { ...node, anyOf: [...node.anyOf, reference] };
    const outer: Record<string, unknown> = {};
    const inner: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) (ANNOTATIONS.has(k) ? outer : inner)[k] = v;
    return { ...outer, anyOf: [inner, reference] };
  }
  // A union with a plain string branch takes a reference there already: its other scalar branches stay as they are.
  const plainString = Array.isArray(node.anyOf) && node.anyOf.some((b: any) => isScalar(b) && acceptsReference(b));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'anyOf' && plainString) {
      out[k] = (v as any[]).map((b) => (isScalar(b) ? b : acceptReferences(b)));
      continue;
    }
    const mapOfSchemas = (k === 'properties' || k === 'patternProperties') && v && typeof v === 'object';
    out[k] = !SUBSCHEMAS.includes(k) ? v : mapOfSchemas ? Object.fromEntries(Object.entries(v as object).map(([name, sub]) => [name, acceptReferences(sub)])) : acceptReferences(v);
  }
  return out;
}

/** A scalar schema (or a union of them) that `${env:X}` does not satisfy. */
function refusesReference(s: any): boolean {
  if (Array.isArray(s.anyOf)) return s.anyOf.every(isScalar) && !s.anyOf.some(acceptsReference);
  return isScalar(s) && !acceptsReference(s);
}

function isScalar(s: any): boolean {
  return !!s && typeof s === 'object' && !s.anyOf && (['string', 'integer', 'number', 'boolean'].includes(s.type) || 'const' in s || 'enum' in s);
}

/** A plain string, at most with a short minimum length (the shortest reference, ${env:X}, has 8 characters). */
function acceptsReference(s: any): boolean {
  return s.type === 'string' && Object.keys(s).every((k) => ANNOTATIONS.has(k) || k === 'type' || (k === 'minLength' && s.minLength <= 8));
}
