/** The admin listener: health, readiness and metrics. Keep it on a private address. */
import { isIP } from 'node:net';
import express, { type Express } from 'express';
import type { Metrics } from '../observability/metrics.js';
import type { GenerationHolder } from '../pipeline/generation.js';
import { headerCount } from './destination.js';
import { hostnameOf } from './router.js';

/** Every admin endpoint is read-only. */
export const ADMIN_METHODS = 'GET, HEAD';

/**
 * `listenHost` is the host of gateway.admin.listen (absent for a bare port): with an IP literal
 * and `localhost`, the only names the listener answers to.
 */
export function adminApp(holder: GenerationHolder, metrics: Metrics, extra: (app: Express) => void = () => undefined, listenHost?: string): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    res.set('allow', ADMIN_METHODS).status(405).json({ error: 'method not allowed' });
  });
  // DNS rebinding: a page the operator opens points a name of its own at 127.0.0.1, and the
  // browser then reads /metrics and /connectors for it, loopback or not. Such a request carries
  // that name as Host; the operator's tools ask by address, localhost or the name written in
  // listen. (No Host at all is HTTP/1.0, not a browser.)
  const known = listenHost?.toLowerCase();
  app.use((req, res, next) => {
    // Node reads the first of two Host headers; a proxy in front may have read the last (RFC 9112 3.2: 400).
    if (headerCount(req.rawHeaders, 'host') > 1) return void res.status(400).json({ error: 'more than one Host header' });
    // An absolute-form target names the host itself, and Host is then ignored (RFC 9112 3.2.2).
    const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(req.originalUrl)?.[1];
    const header = authority === undefined ? req.headers.host : authority.slice(authority.lastIndexOf('@') + 1);
    if (header === undefined) return next();
    // (the edge's reading of a Host header; an IPv6 literal without its brackets for isIP)
    const host = hostnameOf(header)?.replace(/^\[(.*)\]$/, '$1');
    if (host !== undefined && (host === 'localhost' || host === known || isIP(host))) return next();
    res.status(421).json({ error: 'misdirected request: ask by IP address, localhost, or the host of gateway.admin.listen' });
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const gen = holder.current;
    if (holder.stopping) return void res.status(503).json({ status: 'stopping' });
    if (!gen) return void res.status(503).json({ status: 'starting' });
    res.json({ status: 'ready', generation: gen.id, apps: gen.apps.size });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  extra(app);
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  return app;
}

