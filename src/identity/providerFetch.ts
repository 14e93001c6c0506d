/**
 * Every request the gateway makes to the identity provider (discovery, the token endpoint, the
 * key set) goes through requestText: node:http with a timer of our own that covers the whole
 * answer, body included, and a cap on the body's size (refused as soon as it passes it).
 *
 * Not fetch: a key endpoint that sent its head and then stalled held fetch for good once a
 * garbage collection had run (its abort is held weakly); openid-client's timeout covered the
 * head only, so a body that trickled took as long as it liked; and a 400 MB discovery document
 * was read and parsed whole (16 s with the event loop stalled for every app, 2.9 GB).
 */
import http from 'node:http';
import https from 'node:https';
import type { CustomFetch } from 'openid-client';
import { UsageError } from '../errors.js';
import { connectThrough, proxyFor, proxySettingFrom, type ProxySetting } from '../gateway/outboundProxy.js';

export const PROVIDER_TIMEOUT_MS = 5000;
/** far above any real answer (Entra's key set and discovery document are a few KB) */
export const MAX_PROVIDER_ANSWER_BYTES = 1 << 20;

/** The provider gave no complete answer: refused, reset, cut short, or not within the time. An outage. */
export class ProviderNoAnswer extends Error {
  readonly code = 'ERR_IDP_NO_ANSWER';
}

/** The provider's answer is larger than any real one: something on its path, not a document to parse. */
export class ProviderAnswerTooLarge extends Error {
  readonly code = 'ERR_IDP_ANSWER_TOO_LARGE';
}

/** The provider answered with something no request of the gateway's can use: a redirect, a status outside HTTP's. Not an outage. */
export class ProviderAnswerUnusable extends Error {
  readonly code = 'ERR_IDP_ANSWER_UNUSABLE';
}

export interface TextAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** What HTTPS_PROXY and NO_PROXY say: a proxy, none, or why the value cannot be used. */
export interface ProviderProxy {
  setting?: ProxySetting;
  problem?: string;
}

let providerProxy: ProviderProxy | undefined;

/**
 * The proxy the gateway reaches identity providers through, from HTTPS_PROXY / https_proxy and
 * NO_PROXY, read once: in a network that lets nothing out but through a proxy, discovery, the key
 * set and the token endpoint were out of reach. A value that cannot be used (socks5://, no URL)
 * does not stop the gateway, whose apps without sign-in need no provider (machines set the
 * variable for other tools): the gateway command says it at start, and no request goes to the
 * provider, directly either, until it is fixed.
 */
export function providerProxySetting(env: NodeJS.ProcessEnv = process.env): ProviderProxy {
  if (!providerProxy) {
    try {
      providerProxy = { setting: proxySettingFrom(undefined, env) };
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      providerProxy = { problem: e.message };
    }
  }
  return providerProxy;
}

export function requestText(uri: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array }, ms = PROVIDER_TIMEOUT_MS, max = MAX_PROVIDER_ANSWER_BYTES): Promise<TextAnswer> {
  return new Promise((resolve, reject) => {
    const url = new URL(uri);
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = Buffer.byteLength(opts.body);
    const { setting, problem } = providerProxySetting();
    // (fails closed: going around the proxy an operator named, however badly, is not ours to decide)
    if (problem) return reject(new ProviderNoAnswer(`${url.origin}${url.pathname} not asked: ${problem}`));
    const proxy = proxyFor(url, setting);
    const overTls = url.protocol === 'https:';
    const req = (overTls ? https : http).request(url, { method: opts.method ?? 'GET', headers, ...(proxy && { createConnection: connectThrough(proxy, overTls) }) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) return fail(new ProviderAnswerTooLarge(`the answer from ${url.origin}${url.pathname} is larger than ${max >> 20} MiB`));
        chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('aborted', () => fail(new ProviderNoAnswer(`the answer from ${url.origin}${url.pathname} was cut short`)));
      res.on('error', (e) => fail(new ProviderNoAnswer(`the answer from ${url.origin}${url.pathname} was cut short: ${e.message}`)));
    });
    const timer = setTimeout(() => fail(new ProviderNoAnswer(`no complete answer from ${url.origin}${url.pathname} in ${ms / 1000} s`)), ms);
    function fail(e: Error): void {
      clearTimeout(timer);
      req.destroy();
      reject(e);
    }
    req.on('error', (e) => fail(new ProviderNoAnswer(`${url.origin}${url.pathname}: ${e.message}`)));
    req.end(opts.body);
  });
}

const NULL_BODY = new Set([101, 204, 205, 304]);

/** requestText as openid-client's fetch (discovery and the token endpoint). Redirects are not followed, as openid-client asks. */
export const providerFetch: CustomFetch = async (url, options) => {
  const b = options.body;
  const body = b === undefined || b === null ? undefined : typeof b === 'string' || b instanceof Uint8Array ? b : b instanceof URLSearchParams ? b.toString() : b instanceof ArrayBuffer ? new Uint8Array(b) : undefined;
  if (b && body === undefined) throw new TypeError('providerFetch: a streamed request body is not supported');
  const answer = await requestText(url, { method: options.method, headers: Object.fromEntries(new Headers(options.headers as HeadersInit).entries()), body });
  // Said here in the provider's terms: openid-client reports a redirect as an unexpected status
  // with neither, and a status fetch cannot represent (600, 199) as "something went wrong".
  const where = String(url).split('?')[0];
  if (answer.status >= 300 && answer.status < 400) {
    const to = [answer.headers.location ?? []].flat()[0];
    throw new ProviderAnswerUnusable(`${where} answered ${answer.status}, a redirect${to ? ` to ${to.slice(0, 200)}` : ''}, which the gateway does not follow: give the address the provider answers at`);
  }
  if (answer.status < 200 || answer.status > 599) throw new ProviderAnswerUnusable(`${where} answered with status ${answer.status}, which is no HTTP answer`);
  const headers = new Headers();
  for (const [k, v] of Object.entries(answer.headers)) for (const one of [v ?? []].flat()) headers.append(k, one);
  return new Response(NULL_BODY.has(answer.status) ? null : new Uint8Array(answer.body), { status: answer.status, headers });
};
