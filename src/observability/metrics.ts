import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GroupCounts } from '../connector/registry.js';

const TLS_EXPIRY = 'drawbridge_tls_certificate_expiry_timestamp_seconds';
const APP_TLS_EXPIRY = 'drawbridge_app_tls_certificate_expiry_timestamp_seconds';

/** Process-wide metrics; one registry per gateway so tests can run several. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'app' | 'status'>;
  readonly latency: Histogram<'app'>;
  readonly reloads: Counter<'outcome'>;
  readonly generation: Gauge;
  readonly configValid: Gauge;
  readonly decisions: Counter<'app' | 'decision'>;
  readonly auditLost: Counter;
  readonly auditRotations: Counter;
  readonly unhandledRejections: Counter;
  readonly auditWritable: Gauge;
  readonly tlsCertificateExpiry: Gauge;
  readonly appTlsCertificateExpiry: Gauge<'host'>;
  readonly connectorWaits: Counter<'group' | 'outcome'>;
  /** the connector hub's counts per configured group, read at each scrape (none without a hub) */
  connectorCounts: () => Map<string, GroupCounts> = () => new Map();
  private readonly requestCounts = new LabelCounts<'app' | 'status'>();
  private readonly decisionCounts = new LabelCounts<'app' | 'decision'>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'drawbridge_' });
    const requestCounts = this.requestCounts;
    const decisionCounts = this.decisionCounts;
    this.requests = new Counter({
      name: 'drawbridge_requests_total',
      help: 'Requests by app and status code.',
      labelNames: ['app', 'status'],
      registers: [this.registry],
      collect() {
        requestCounts.flushInto(this);
      },
    });
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
    this.decisions = new Counter({
      name: 'drawbridge_decisions_total',
      help: 'Pipeline decisions by app and kind.',
      labelNames: ['app', 'decision'],
      registers: [this.registry],
      collect() {
        decisionCounts.flushInto(this);
      },
    });
    this.auditRotations = new Counter({ name: 'drawbridge_audit_rotations_total', help: 'Audit log rotations (audit.log renamed to audit.log.1); a fast rate means the kept files hold little time.', registers: [this.registry] });
    this.auditLost = new Counter({ name: 'drawbridge_audit_records_lost_total', help: 'Audit records that could not be written (disk full, lost mount); the request was still served.', registers: [this.registry] });
    this.unhandledRejections = new Counter({ name: 'drawbridge_unhandled_rejections_total', help: 'Promises that failed with nothing to handle them: each is a defect (logged at error level with its stack); the gateway kept serving.', registers: [this.registry] });
    this.auditWritable = new Gauge({ name: 'drawbridge_audit_log_writable', help: '1 while the audit log is written, 0 from a failed write until a write succeeds again.', registers: [this.registry] });
    // Registered with the first certificate served (tlsCertificateServed): a gateway without an
    // https listener showed 0, an end date in 1970, and every expiry alert fired for it.
    this.tlsCertificateExpiry = new Gauge({ name: TLS_EXPIRY, help: 'When the certificate the https listener serves runs out (Unix time); alert well before it.', registers: [] });
    this.appTlsCertificateExpiry = new Gauge({ name: APP_TLS_EXPIRY, help: 'When the certificate served for an app host by SNI (apps[].tls) runs out (Unix time), by host; alert well before it.', labelNames: ['host'], registers: [this.registry] });
    this.connectorWaits = new Counter({
      name: 'drawbridge_connector_waits_total',
      help: 'Requests that found no usable connector in a group expecting one back (a connector restarting, a gateway restart) and waited, by how the wait ended: served (a channel became usable), timeout (none within the wait: 504), released (the gateway stopped, or a reload revoked the connector: 504), abandoned (the client left).',
      labelNames: ['group', 'outcome'],
      registers: [this.registry],
    });
    // (read through the field at each scrape: the gateway sets it once its hub runs)
    const counts = () => this.connectorCounts();
    groupGauge(this.registry, 'drawbridge_connectors', 'Connectors with an open channel, by connector group of the config (0 for a group with none: its apps get 504).', counts, 'connectors');
    groupGauge(this.registry, 'drawbridge_connector_channels', 'Open connector channels, by connector group of the config.', counts, 'channels');
  }

  /** The end date of the certificate the https listener serves, in ms (drawbridge_tls_certificate_expiry_timestamp_seconds). */
  tlsCertificateServed(untilMs: number): void {
    if (!this.registry.getSingleMetric(TLS_EXPIRY)) this.registry.registerMetric(this.tlsCertificateExpiry);
    this.tlsCertificateExpiry.set(Math.floor(untilMs / 1000));
  }

  /** The end dates of the app certificates served by SNI, in ms: hosts no longer served leave the gauge. */
  appCertificatesServed(certs: readonly { host: string; until: number }[]): void {
    this.appTlsCertificateExpiry.reset();
    for (const c of certs) this.appTlsCertificateExpiry.set({ host: c.host }, Math.floor(c.until / 1000));
  }

  /** One finished request (drawbridge_requests_total). */
  countRequest(app: string, status: number): void {
    this.requestCounts.add(app, status, { app, status });
  }

  /** One access decision (drawbridge_decisions_total). */
  countDecision(app: string, decision: string): void {
    this.decisionCounts.add(app, decision, { app, decision });
  }
}

/** A gauge per connector group, read at the scrape and reset first: a group the config dropped goes from the output. */
function groupGauge(registry: Registry, name: string, help: string, counts: () => Map<string, GroupCounts>, field: keyof GroupCounts): void {
  new Gauge({
    name,
    help,
    labelNames: ['group'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [group, n] of counts()) this.set({ group }, n[field]);
    },
  });
}

/**
 * Per-request counters as plain numbers, folded into prom-client when scraped:
 * prom-client hashes the label object on every inc(), which showed in the
 * gateway's CPU profile at several thousand requests per second.
 */
class LabelCounts<L extends string> {
  private readonly counts = new Map<string, { labels: Partial<Record<L, string | number>>; pending: number }>();

  add(a: string, b: string | number, labels: Partial<Record<L, string | number>>): void {
    const key = `${a}\u0000${b}`;
    const entry = this.counts.get(key);
    if (entry) entry.pending++;
    else this.counts.set(key, { labels, pending: 1 });
  }

  flushInto(counter: Counter<L>): void {
    for (const entry of this.counts.values()) {
      if (entry.pending === 0) continue;
      counter.inc(entry.labels, entry.pending);
      entry.pending = 0;
    }
  }
}
