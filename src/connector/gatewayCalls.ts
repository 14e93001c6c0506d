/**
 * The connector's one-shot HTTPS calls to the gateway (its CA, enrollment, renewal) and the
 * words for a dial that failed. The channels themselves are in channelLink.ts.
 */
import type http from 'node:http';
import https from 'node:https';
import { ConnectorError } from '../errors.js';
import { OFFER_CONNECTOR_ALPN } from './channelLink.js';
import { dialVia, type OutboundProxy } from '../gateway/outboundProxy.js';

export const CONNECTOR_VERSION = '0.1.0';

export function postJson(url: URL, body: unknown, tlsOpts: https.RequestOptions, proxy?: OutboundProxy): Promise<{ status: number; body: Record<string, unknown>; retryAfterS?: number }> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = https.request(url, { ...tlsOpts, ...OFFER_CONNECTOR_ALPN, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, ...dialVia(proxy), timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      whenCutShort(res, url, reject);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          /* no JSON: the status says what happened */
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, retryAfterS: Number(res.headers['retry-after']) || undefined });
      });
    });
    req.on('timeout', () => req.destroy(new Error('the gateway did not answer in time')));
    req.on('error', reject);
    req.end(text);
  });
}

/**
 * An answer whose connection closed before its end. Nothing else settles the request then: a
 * cut-short /v1/ca left enroll waiting on nothing, and a cut-short renewal held `renewing` for
 * good, so the certificate ran out without another try.
 */
function whenCutShort(res: http.IncomingMessage, url: URL, reject: (e: Error) => void): void {
  const cut = () => reject(Object.assign(new Error(`the answer to ${url.pathname} was cut short`), { code: 'ERR_ANSWER_CUT_SHORT' }));
  res.on('error', cut);
  res.on('close', () => {
    if (!res.complete) cut();
  });
}

export function getText(url: URL, tlsOpts: https.RequestOptions, proxy?: OutboundProxy): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...tlsOpts, ...OFFER_CONNECTOR_ALPN, ...dialVia(proxy), timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      whenCutShort(res, url, reject);
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(Object.assign(new Error(`GET ${url.pathname}: ${res.statusCode}`), { status: res.statusCode }))));
    });
    req.on('timeout', () => req.destroy(new Error('the gateway did not answer in time')));
    req.on('error', reject);
  });
}

/**
 * What is wrong with a --gateway value, or undefined: it must be the connectors.listen endpoint,
 * which speaks TLS. Both are bad usage (exit 2); http:// failed later as an enrollment (exit 1).
 * `source` names where the value came from (DRAWBRIDGE_GATEWAY for a service that sets no option).
 */
export function gatewayUrlProblem(text: string, source = '--gateway'): string | undefined {
  if (!URL.canParse(text)) return `${source} must be a URL like https://host:port (the connectors.listen endpoint), not ${JSON.stringify(text)}`;
  const { protocol } = new URL(text);
  if (protocol !== 'https:' && protocol !== 'wss:') return `${source} must be https://host:port (the connectors.listen endpoint speaks TLS only), not ${JSON.stringify(text)}`;
  return undefined;
}

/**
 * A TLS client that reached something speaking plain text (the gateway's http listener, its admin
 * port) gets bytes that are no TLS record: OpenSSL says "wrong version number" or "packet length
 * too long", as EPROTO on the socket write or as an ERR_SSL_ code, in a message that runs to two lines.
 */
function isNotTls(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!e || typeof e.message !== 'string') return false;
  return (e.code === 'EPROTO' || String(e.code).startsWith('ERR_SSL_')) && /wrong version number|packet length too long|http request|record layer failure/i.test(e.message);
}

function notTlsError(gateway: URL | string): ConnectorError {
  const origin = typeof gateway === 'string' ? gateway : gateway.origin;
  return new ConnectorError('ERR_NOT_TLS', `${origin} is not a TLS endpoint (it answered in plain text): is this the connectors.listen port?`);
}
/**
 * OpenSSL's codes for a server certificate that does not chain to the CA the client trusts: for
 * a connector, whose only trusted CA is the one it enrolled with, the gateway's connector CA was
 * replaced (a rotation, a lost stateDir) or the address now reaches another gateway. An expired
 * or misnamed certificate has other codes, and another cause.
 */
const FOREIGN_CA_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

export function isForeignCa(err: unknown): boolean {
  return FOREIGN_CA_CODES.has(String((err as NodeJS.ErrnoException | undefined)?.code));
}

/** The reason to show for a failed dial to the gateway. */
export function dialFailure(err: Error, gateway: URL | string): string {
  return isNotTls(err) ? notTlsError(gateway).message : err.message;
}

export async function talkingToGateway<T>(gateway: URL, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw isNotTls(e) ? notTlsError(gateway) : e;
  }
}
