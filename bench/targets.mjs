/**
 * The ratios the issues set as targets: which row is compared with which, and the least ratio
 * asked. One list for the throughput summary (summary.mjs) and the instruction counts
 * (instructions-summary.mjs).
 */

/** [row, baseline, target ratio, what the issue asks] */
export const CHECKS = [
  ['gateway', 'direct', null, 'issue 2: share of the bare backend'],
  ['gateway', 'node-http-proxy', 1.0, 'issue 2: at least match bare Node http-proxy'],
  ['gateway', 'express-hpm', 2.0, 'issue 2: at least double express + http-proxy-middleware'],
  ['gateway', 'nginx', null, 'for scale'],
  ['gateway-bearer', 'gateway', 0.85, 'issue 4: bearer verification costs at most 15%'],
  ['gateway-policies', 'gateway-bearer', 0.9, 'issue 5: five policies cost at most 10%'],
  ['gateway-connector', 'localtunnel', null, 'issue 3: >= 2.0x small, >= 1.5x big, lower p99'],
  ['gateway-connector', 'gateway', 0.6, 'issue 3: tunnel at least 0.6x direct mode'],
  ['tls-relay', 'gateway', null, 'the TLS hop alone: a bare relay between two Node processes against direct mode'],
  ['gateway-connector', 'tls-relay', null, 'the tunnel against that bare relay'],
];
const CONNECTOR_VS_LT = { small: 2.0, big: 1.5 };

/** the least ratio asked of row against base in this scenario, or null where none is */
export function targetOf(row, base, scen, target) {
  return row === 'gateway-connector' && base === 'localtunnel' ? (CONNECTOR_VS_LT[scen] ?? null) : target;
}
