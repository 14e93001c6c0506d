/** The admin listener: health, readiness and metrics. Keep it on a private address. */
import express, { type Express } from 'express';
import type { Metrics } from '../observability/metrics.js';
import type { GenerationHolder } from '../pipeline/generation.js';

/** Every admin endpoint is read-only. */
export const ADMIN_METHODS = 'GET, HEAD';

export function adminApp(holder: GenerationHolder, metrics: Metrics, extra: (app: Express) => void = () => undefined): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    res.set('allow', ADMIN_METHODS).status(405).json({ error: 'method not allowed' });
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const gen = holder.current;
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
