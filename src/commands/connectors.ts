import http from 'node:http';
import { parse as parseYaml } from 'yaml';
import type { ConnectorSummary } from '../connector/registry.js';
import { discoverConfig, loadConfigFile } from '../config/load.js';
import { ConfigInvalidError, OperationalError, UsageError, formatProblem, type Problem } from '../errors.js';
import { parseListen } from '../gateway/listen.js';
import { parseCommandArgs } from './usage.js';

const USAGE = 'drawbridge connectors [--config FILE] [--json]';

/** drawbridge connectors [--config FILE] [--json]: asks the running gateway's admin listener. */
export async function connectorsCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } } }, USAGE);
  const admin = await adminListen(values.config);
  const addr = parseListen(admin.listen);
  const host = !addr.host || addr.host === '0.0.0.0' ? '127.0.0.1' : addr.host === '::' ? '::1' : addr.host;
  // an IPv6 address in brackets, as gateway.admin.listen writes it: "::1:9090" named no port one could tell apart
  const where = `the gateway admin listener at ${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
  let answer: { status: number; type: string; body: string };
  try {
    answer = await new Promise((resolve, reject) => {
      http
        .get({ host, port: addr.port, path: '/connectors', timeout: 5000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? 'no content-type'), body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        })
        .on('timeout', function (this: http.ClientRequest) {
          this.destroy(new Error('no answer in 5 s'));
        })
        .on('error', reject);
    });
  } catch (e) {
    throw new OperationalError('ERR_ADMIN_UNREACHABLE', `${where} did not answer (${(e as Error).message}); is the gateway running?`);
  }
  const list = connectorList(answer);
  if (!list) {
    // Something answers there, but not this gateway's admin listener (another service, another version).
    throw new OperationalError('ERR_ADMIN_ANSWER', `${where} answered ${answer.status} (${answer.type}) without a connectors list: ${JSON.stringify(answer.body.slice(0, 80))}; is gateway.admin.listen the port of this gateway's admin listener?`);
  }
  if (values.json) {
    process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  const rows = [['ID', 'GROUP', 'VERSION', 'ADDRESS', 'TRANSPORT', 'CHANNELS', 'IN-FLIGHT', 'LAST SEEN', 'CERT EXPIRY']];
  // (a gateway older than the `active` field lists live connectors only)
  const inactive = (c: ConnectorSummary): boolean => c.active === false;
  for (const c of list) rows.push([c.id, c.group, c.version, c.address, c.transport ?? '-', String(c.channels), String(c.inflight), c.lastSeen + (inactive(c) ? ' (inactive)' : ''), c.certExpiry + (c.draining ? ' (draining)' : '')]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) process.stdout.write(r.map((v, i) => String(v).padEnd(widths[i])).join('  ').trimEnd() + '\n');
  if (list.length === 0) process.stdout.write('(no connector is connected, nor was one in the last 10 days)\n');
  else if (list.every(inactive)) process.stdout.write('(no connector is connected)\n');
  return 0;
}

/**
 * gateway.admin.listen, the one key this command needs. The config is read in lint mode: an
 * operator's shell lacks the service's ${env:...} and ${file:...} secrets, and start mode refused
 * the whole file for session.secrets and identity.clientSecret it never uses.
 */
async function adminListen(file: string | undefined): Promise<{ listen: string | number }> {
  const path = file ?? (await discoverConfig());
  if (!path) throw new UsageError('no --config given and no gateway.config.yaml found', USAGE);
  const result = await loadConfigFile(path, { mode: 'lint' });
  if (!result.config) return adminListenOfInvalid(path, result.text, result.problems);
  const listen = result.config.gateway.admin?.listen;
  if (listen === undefined) {
    throw new OperationalError('ERR_NO_ADMIN_LISTENER', 'the config has no gateway.admin listener to ask');
  }
  // In lint mode an unresolved ${...} is a warning and its value an empty stand-in: here it is the address itself.
  if (listen === '') {
    const why = result.problems.find((p) => p.path === 'gateway.admin.listen');
    throw new OperationalError('ERR_NO_ADMIN_LISTENER', why ? formatProblem({ ...why, severity: 'error' }) : 'gateway.admin.listen is empty');
  }
  return { listen };
}

/**
 * An operator asks for the connectors most when something is wrong, and a broken edit of the
 * config is often that something: the gateway keeps serving its last valid version, and this
 * command refused the whole file. When the file is YAML and gateway.admin.listen itself is fine,
 * that address is used, with a warning naming the problems' count.
 */
function adminListenOfInvalid(path: string, text: string, problems: readonly Problem[]): { listen: string | number } {
  const errors = problems.filter((p) => p.severity === 'error');
  const refuse = () => new ConfigInvalidError([...problems], path);
  // (a problem at gateway, gateway.admin or the key itself, or at the root: the address is part of it)
  if (errors.some((p) => p.path === '' || 'gateway.admin.listen'.startsWith(p.path) || p.path.startsWith('gateway.admin.listen'))) throw refuse();
  let listen: unknown;
  try {
    listen = (parseYaml(text) as { gateway?: { admin?: { listen?: unknown } } } | null)?.gateway?.admin?.listen;
  } catch {
    throw refuse();
  }
  if (typeof listen === 'number' || (typeof listen === 'string' && !listen.includes('${'))) {
    try {
      parseListen(listen);
    } catch {
      throw refuse();
    }
    process.stderr.write(`warning: ${path} has ${errors.length} problem${errors.length === 1 ? '' : 's'} (\`drawbridge lint ${path}\` lists them; a running gateway serves its last valid config): asking the admin listener it names, ${listen}\n`);
    return { listen };
  }
  throw refuse();
}

/** The list from the admin listener's answer, or undefined when the answer is not one. */
function connectorList(answer: { status: number; body: string }): ConnectorSummary[] | undefined {
  if (answer.status !== 200) return undefined;
  try {
    const list = (JSON.parse(answer.body) as { connectors?: unknown })?.connectors;
    return Array.isArray(list) && list.every((c) => c !== null && typeof c === 'object') ? (list as ConnectorSummary[]) : undefined;
  } catch {
    return undefined;
  }
}
