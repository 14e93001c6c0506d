import http from 'node:http';
import type { ConnectorSummary } from '../connector/registry.js';
import { parseListen } from '../gateway/listen.js';
import { gatewayConfig } from './token.js';
import { parseCommandArgs } from './usage.js';

const USAGE = 'drawbridge connectors [--config FILE] [--json]';

/** drawbridge connectors [--config FILE] [--json]: asks the running gateway's admin listener. */
export async function connectorsCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } } }, USAGE);
  const { config } = await gatewayConfig(values.config, USAGE);
  if (!config.gateway.admin) {
    process.stderr.write('drawbridge connectors: the config has no gateway.admin listener to ask\n');
    return 1;
  }
  const addr = parseListen(config.gateway.admin.listen);
  const host = !addr.host || addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  let list: ConnectorSummary[];
  try {
    list = await new Promise((resolve, reject) => {
      http
        .get({ host, port: addr.port, path: '/connectors', timeout: 5000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            try {
              resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { connectors: ConnectorSummary[] }).connectors);
            } catch (e) {
              reject(e);
            }
          });
        })
        .on('error', reject);
    });
  } catch (e) {
    process.stderr.write(`drawbridge connectors: the gateway admin listener at ${host}:${addr.port} did not answer (${(e as Error).message}); is the gateway running?\n`);
    return 1;
  }
  if (values.json) {
    process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  const rows = [['ID', 'GROUP', 'VERSION', 'ADDRESS', 'TRANSPORT', 'CHANNELS', 'IN-FLIGHT', 'LAST SEEN', 'CERT EXPIRY']];
  for (const c of list) rows.push([c.id, c.group, c.version, c.address, c.transport ?? '-', String(c.channels), String(c.inflight), c.lastSeen, c.certExpiry + (c.draining ? ' (draining)' : '')]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd() + '\n');
  if (list.length === 0) process.stdout.write('(no connector is connected)\n');
  return 0;
}
