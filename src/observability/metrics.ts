import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Process-wide metrics; one registry per gateway so tests can run several. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'app' | 'status'>;
  readonly latency: Histogram<'app'>;
  readonly reloads: Counter<'outcome'>;
  readonly generation: Gauge;
  readonly configValid: Gauge;
  readonly decisions: Counter<'app' | 'decision'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'drawbridge_' });
    this.requests = new Counter({ name: 'drawbridge_requests_total', help: 'Requests by app and status code.', labelNames: ['app', 'status'], registers: [this.registry] });
    this.latency = new Histogram({
      name: 'drawbridge_request_duration_seconds',
      help: 'Time from request to response end, by app.',
      labelNames: ['app'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 90, 180],
      registers: [this.registry],
    });
    this.reloads = new Counter({ name: 'drawbridge_config_reloads_total', help: 'Config reloads by outcome (success, failure, unchanged).', labelNames: ['outcome'], registers: [this.registry] });
    this.generation = new Gauge({ name: 'drawbridge_config_generation', help: 'Id of the live config generation.', registers: [this.registry] });
    this.configValid = new Gauge({ name: 'drawbridge_config_last_reload_success', help: '1 when the last reload attempt succeeded, 0 when the file on disk is invalid and the last good config is serving.', registers: [this.registry] });
    this.decisions = new Counter({ name: 'drawbridge_decisions_total', help: 'Pipeline decisions by app and kind.', labelNames: ['app', 'decision'], registers: [this.registry] });
  }
}
