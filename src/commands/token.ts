import { join, resolve } from 'node:path';
import { discoverConfig, loadConfigFile, type Config } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import { ConfigInvalidError, OperationalError, UsageError } from '../errors.js';
import { ConnectorCa } from '../connector/ca.js';
import { createToken } from '../connector/tokens.js';
import { HelpRequest, asOperational, isHelp, parseCommandArgs } from './usage.js';

const USAGE = 'drawbridge token create --group NAME [--ttl 1h] [--config FILE]';
const MAX_TOKEN_TTL_MS = 7 * 86_400_000;

/**
 * The gateway config for commands that work on its stateDir. Read in lint mode: they use
 * gateway.stateDir and the connector groups, and an operator's shell (or a demo that never
 * started) lacks the service's ${env:...} and ${file:...} secrets, which start mode demanded.
 */
export async function gatewayConfig(file: string | undefined, usage?: string): Promise<{ config: Config; stateDir: string; dir: string }> {
  const path = file ?? (await discoverConfig());
  if (!path) throw new UsageError('no --config given and no gateway.config.yaml found', usage);
  const result = await loadConfigFile(path, { mode: 'lint' });
  if (!result.config) throw new ConfigInvalidError(result.problems, path);
  // In lint mode an unresolved ${...} is a warning and its value an empty stand-in: here it is the directory itself.
  if (result.config.gateway.stateDir === '') {
    const why = result.problems.find((p) => p.path === 'gateway.stateDir');
    throw new ConfigInvalidError([why ? { ...why, severity: 'error' } : { file: path, path: 'gateway.stateDir', message: 'is empty', severity: 'error' }], path);
  }
  return { config: result.config, dir: result.dir, stateDir: resolve(result.dir, result.config.gateway.stateDir ?? './state') };
}

/** drawbridge token create --group NAME [--ttl 1h] [--config FILE] */
export async function tokenCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (isHelp(sub)) throw new HelpRequest(USAGE);
  if (sub !== 'create') throw new UsageError(sub === undefined ? 'a subcommand is required: create' : `unknown subcommand ${JSON.stringify(sub)} (there is only create)`, USAGE);
  const { values } = parseCommandArgs({ args: rest, options: { group: { type: 'string', short: 'g' }, ttl: { type: 'string', default: '1h' }, config: { type: 'string', short: 'c' } } }, USAGE);
  if (!values.group) throw new UsageError('--group NAME is required', USAGE);
  const ttl = parseDuration(values.ttl!);
  if (ttl === undefined || ttl <= 0) throw new UsageError(`invalid --ttl ${JSON.stringify(values.ttl)} (e.g. 15m, 1h, 2d)`, USAGE);
  // An unused token is a standing credential for joining the group: it is meant for the install at hand.
  if (ttl > MAX_TOKEN_TTL_MS) throw new UsageError(`--ttl ${values.ttl} is longer than 7d: an enrollment token is meant for the connector being installed now (make one per install)`, USAGE);
  const { config, stateDir } = await gatewayConfig(values.config, USAGE);
  if (!config.connectors) {
    throw new OperationalError('ERR_NO_CONNECTORS', 'the config has no connectors: section');
  }
  if (!(values.group in (config.connectorGroups ?? {}))) {
    throw new OperationalError('ERR_UNKNOWN_GROUP', `unknown connector group ${JSON.stringify(values.group)} (configured: ${Object.keys(config.connectorGroups ?? {}).join(', ') || 'none'})`);
  }
  const ca = await asOperational(`cannot open the connector CA in ${stateDir}`, () => ConnectorCa.loadOrCreate(stateDir));
  // On stderr, so `$(drawbridge token create ...)` still captures only the token.
  if (ca.created) process.stderr.write(`drawbridge token create: created a new connector CA in ${join(stateDir, 'connectors')} (pin ${ca.pin}); a gateway already running on this stateDir still uses the CA it started with, so restart it before this token is used, and connectors enrolled with another CA must be enrolled again\n`);
  process.stdout.write((await asOperational(`cannot record the token in ${stateDir}`, () => createToken(stateDir, values.group!, ttl, ca.pin))) + '\n');
  return 0;
}
