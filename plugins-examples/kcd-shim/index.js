/**
 * kcd-shim: single sign-on to Windows-integrated apps by Kerberos constrained
 * delegation (KCD), the way Entra application proxy connectors do it.
 *
 * A real KCD exchange (S4U2Self + S4U2Proxy) needs a KDC and a service account
 * allowed to delegate. This plugin does not pretend to be one: it asks an
 * operator-run delegation service for a ticket over HTTP and passes it on as
 * `Negotiate <ticket>`. Without such a service it denies every request (502),
 * because forwarding a request without the ticket would reach the app as an
 * anonymous user or, worse, with whatever the client put in the header.
 *
 * It depends on nothing at run time: the `drawbridge` import below is a type
 * import that only editors and `tsc --checkJs` read.
 */

/**
 * @typedef {object} KcdShimOptions
 * @property {string} servicePrincipal  SPN of the app, SERVICE/host@REALM, e.g. HTTP/payroll.corp.internal@CORP.INTERNAL
 * @property {string} [delegationHeader]  request header that carries the ticket to the app (default Authorization)
 * @property {string} [tokenEndpoint]  internal URL of the delegation service; without it every request is denied
 * @property {number} [timeoutMs]  how long to wait for the delegation service (default 5000)
 */

const SPN_PATTERN = '^[A-Za-z][A-Za-z0-9_-]*/[A-Za-z0-9.-]+(:[0-9]{1,5})?@[A-Za-z0-9.-]+$';
const HEADER_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/** request headers the gateway owns (framing, connection, routing, forwarding, correlation) */
const GATEWAY_SETS = /^(host|content-length|transfer-encoding|connection|keep-alive|proxy-connection|proxy-authorization|te|trailer|upgrade|expect|forwarded|x-forwarded-.*|x-correlation-id)$/i;
/** base64 (RFC 4648, standard alphabet): what SPNEGO tokens travel as in HTTP */
const TICKET_PATTERN = /^[A-Za-z0-9+/]+={0,2}$/;
const MAX_TICKET_BYTES = 64 * 1024;
/** the most of the service's answer read: a ticket in a little JSON */
const MAX_ANSWER_BYTES = 2 * MAX_TICKET_BYTES;

/**
 * The answer's text, or undefined when it is larger than MAX_ANSWER_BYTES. Read piece by piece and
 * let go at the limit: `res.text()` took in whatever the service sent before its length could be
 * checked (300 MB held a gigabyte of the gateway's memory for 10 s, every app of the gateway slowed
 * meanwhile, and a few at once could exhaust it). The reads run under the fetch's timeout signal,
 * so `timeoutMs` covers the body too.
 * @param {Response} res
 * @param {AbortSignal} signal
 * @returns {Promise<string | undefined>}
 */
async function readAnswer(res, signal) {
  if (!res.body) return '';
  // a declared length over the limit is refused before a byte of the body is read
  if (Number(res.headers.get('content-length')) > MAX_ANSWER_BYTES) {
    await res.body.cancel();
    return undefined;
  }
  const reader = res.body.getReader();
  /** @type {Uint8Array[]} */
  const chunks = [];
  let size = 0;
  for (;;) {
    signal.throwIfAborted();
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks).toString('utf8');
    size += value.byteLength;
    if (size > MAX_ANSWER_BYTES) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
}

/** @type {import('drawbridge').Plugin<KcdShimOptions>} */
const kcdShim = {
  name: 'kcd-shim',
  kind: 'sso',
  apiVersion: 1,
  description: 'Kerberos constrained delegation through an external delegation service (Negotiate header to the app).',
  optionsSchema: {
    type: 'object',
    properties: {
      servicePrincipal: {
        type: 'string',
        pattern: SPN_PATTERN,
        description: 'Service principal name of the app: SERVICE/host@REALM, e.g. HTTP/payroll.corp.internal@CORP.INTERNAL.',
      },
      delegationHeader: {
        type: 'string',
        pattern: HEADER_PATTERN,
        default: 'Authorization',
        description: 'Request header that carries "Negotiate <ticket>" to the app. Clients can never supply it.',
      },
      tokenEndpoint: {
        type: 'string',
        pattern: '^https?://[^\\s]+$',
        format: 'uri',
        description: 'Internal URL of a delegation service that answers POST {user, servicePrincipal} with {ticket}. Without it every request is denied (502).',
      },
      timeoutMs: {
        type: 'integer',
        minimum: 100,
        maximum: 60000,
        default: 5000,
        description: 'How long to wait for the delegation service, in milliseconds.',
      },
    },
    required: ['servicePrincipal'],
    additionalProperties: false,
  },

  create(options, context) {
    // Checked here, once, so a bad value fails the config load instead of a request.
    // (The gateway validated optionsSchema already; a plugin cannot know that every host does.)
    const servicePrincipal = options.servicePrincipal;
    if (typeof servicePrincipal !== 'string' || !new RegExp(SPN_PATTERN).test(servicePrincipal)) {
      throw new TypeError(`kcd-shim: servicePrincipal must look like SERVICE/host@REALM, got ${JSON.stringify(servicePrincipal)}`);
    }
    const header = options.delegationHeader ?? 'Authorization';
    if (!new RegExp(HEADER_PATTERN).test(header)) throw new TypeError(`kcd-shim: delegationHeader ${JSON.stringify(header)} is not a header name`);
    // The gateway sets these itself: the ticket would be refused or replaced, never delivered.
    if (GATEWAY_SETS.test(header)) throw new TypeError(`kcd-shim: delegationHeader ${JSON.stringify(header)} is a header the gateway sets itself; choose another`);
    const timeoutMs = options.timeoutMs ?? 5000;
    /** @type {URL | undefined} */
    let endpoint;
    if (options.tokenEndpoint !== undefined) {
      endpoint = new URL(options.tokenEndpoint);
      if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') throw new TypeError('kcd-shim: tokenEndpoint must be an http or https URL');
    }
    const headerKey = header.toLowerCase();
    const log = context.logger.child({ plugin: 'kcd-shim' });

    /**
     * @param {string} reason  for logs and the audit trail
     * @returns {import('drawbridge').Decision}
     */
    const badGateway = (reason) => ({
      kind: 'deny',
      status: 502,
      reasons: [`kcd-shim: ${reason}`],
      publicReason: 'Single sign-on to this app failed: the gateway could not obtain a Kerberos ticket for you.',
    });

    if (!endpoint) {
      log.warn({ servicePrincipal }, 'kcd-shim has no tokenEndpoint: every request to this app is denied');
      return {
        name: 'kcd-shim',
        kind: 'sso',
        stripHeaders: [headerKey],
        run: () => ({
          kind: 'deny',
          status: 502,
          reasons: [`kcd-shim: no delegation service is configured (options.tokenEndpoint) for ${servicePrincipal}; the request is not forwarded without a Kerberos ticket`],
          publicReason: 'Single sign-on to this app is not available: no Kerberos delegation service is configured.',
        }),
      };
    }
    const target = endpoint;

    return {
      name: 'kcd-shim',
      kind: 'sso',
      // The edge drops client copies of this header before any stage runs: the
      // only value the app can ever see is the one set below.
      stripHeaders: [headerKey],
      async run(ctx) {
        const user = ctx.identity?.user;
        // An sso stage runs after pre-authentication; no user here means the pipeline is
        // misbuilt, and delegating for nobody must not turn into forwarding anyway.
        if (!user) return badGateway('no signed-in user to delegate for');
        let answer;
        try {
          const signal = AbortSignal.timeout(timeoutMs);
          const res = await fetch(target, {
            method: 'POST',
            headers: { 'content-type': 'application/json', accept: 'application/json', 'x-correlation-id': ctx.id },
            body: JSON.stringify({ user, servicePrincipal }),
            signal,
            redirect: 'error',
          });
          if (!res.ok) {
            await res.body?.cancel();
            return badGateway(`delegation service answered ${res.status} for ${user} -> ${servicePrincipal}`);
          }
          const text = await readAnswer(res, signal);
          if (text === undefined) return badGateway(`delegation service answer is too large (more than ${MAX_ANSWER_BYTES} bytes)`);
          answer = JSON.parse(text);
        } catch (e) {
          const err = /** @type {Error} */ (e);
          const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs}ms` : err.name === 'SyntaxError' ? 'answer is not JSON' : (/** @type {any} */ (err).cause?.code ?? err.message);
          return badGateway(`delegation service unusable: ${why}`);
        }
        const ticket = answer && typeof answer === 'object' ? answer.ticket : undefined;
        if (typeof ticket !== 'string' || !TICKET_PATTERN.test(ticket) || ticket.length > MAX_TICKET_BYTES) {
          return badGateway('delegation service answer has no base64 "ticket"');
        }
        return { kind: 'continue', setHeaders: { [headerKey]: `Negotiate ${ticket}` }, reasons: [`kcd-shim: ticket for ${user} -> ${servicePrincipal}`] };
      },
    };
  },
};

export default kcdShim;
