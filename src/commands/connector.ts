import { existsSync, rmdirSync } from 'node:fs';
import { ConnectorAgent, DEFAULT_DRAIN_TIMEOUT_MS } from '../connector/agent.js';
import { enroll, readCaFile } from '../connector/enroll.js';
import { gatewayUrlProblem } from '../connector/gatewayCalls.js';
import { ENROLL_AGAIN, TOKEN_UNSPENT, isEnrolled, makeStateDir, stateDirUnwritable, storedEnrollment, type ConnectorState } from '../connector/stateDir.js';
import { CHANNEL_TRANSPORTS, type ChannelTransport } from '../connector/channelLink.js';
import { parseDuration } from '../config/duration.js';
import { ConnectorError, DrawbridgeError, UsageError } from '../errors.js';
import { CONNECTOR_LOCK, StateDirLock, warnIfStateDirOpen } from '../gateway/stateLock.js';
import { proxySettingFrom, type ProxySetting } from '../gateway/outboundProxy.js';
import { decodeToken } from '../connector/tokens.js';
import { createLogger } from '../observability/logger.js';
import { reportProcessFaults } from '../observability/processFaults.js';
import { logHeapGrowth, preferThroughputHeap } from './heapGrowth.js';
import { onStopSignals } from './signals.js';
import { HelpRequest, asOperational, isHelp, parseCommandArgs, wholeNumberOption } from './usage.js';

const ENROLL = 'drawbridge connector enroll --gateway URL --token TOKEN [--state-dir DIR] [--ca FILE] [--proxy URL]';
const RUN = `drawbridge connector run [--state-dir DIR] [--channels 1-16] [--transport h2|websocket] [--drain-timeout 30s]
                                [--proxy URL] [--gateway URL --token TOKEN [--ca FILE]]`;
const USAGE = `usage: ${ENROLL}
       ${RUN.replace(/\n {32}/, '\n' + ' '.repeat(39))}
run enrolls first when the state dir holds no enrollment and a token is given
(also from DRAWBRIDGE_GATEWAY and DRAWBRIDGE_TOKEN)
--state-dir defaults to DRAWBRIDGE_CONNECTOR_STATE_DIR, then ./connector-state;
--transport to DRAWBRIDGE_CONNECTOR_TRANSPORT, then h2; --channels to 2
--proxy (an http:// or https:// proxy the gateway is reached through, by CONNECT) defaults to
HTTPS_PROXY, unless NO_PROXY covers the gateway
`;

/**
 * Channels per connector: each is a TLS connection and an HTTP/2 session the gateway keeps
 * and pings; a few carry any load (streams are multiplexed), the rest only cost both sides.
 */
export const MAX_CHANNELS = 16;

/** Options that shape a running connector; enroll stores a certificate and would drop them unseen. */
const RUN_ONLY = ['channels', 'transport', 'drain-timeout'] as const;

export async function connectorCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (isHelp(sub)) throw new HelpRequest(USAGE);
  if (sub !== 'enroll' && sub !== 'run') throw new UsageError(sub === undefined ? 'a subcommand is required: enroll or run' : `unknown subcommand ${JSON.stringify(sub)} (enroll or run)`, USAGE);
  const synopsis = sub === 'enroll' ? ENROLL : RUN;
  const { values } = parseCommandArgs({
    args: rest,
    options: {
      gateway: { type: 'string' },
      token: { type: 'string' },
      'state-dir': { type: 'string' },
      ca: { type: 'string' },
      channels: { type: 'string' },
      transport: { type: 'string' },
      'drain-timeout': { type: 'string' },
      proxy: { type: 'string' },
    },
  }, synopsis);
  const stateDir = values['state-dir'] ?? fromEnv('DRAWBRIDGE_CONNECTOR_STATE_DIR') ?? './connector-state';
  const { value: gateway, from: gatewayFrom } = optionOrEnv(values.gateway, 'gateway', 'DRAWBRIDGE_GATEWAY');
  const token = values.token ?? fromEnv('DRAWBRIDGE_TOKEN');
  // Said before the state dir is made (a refused command left an empty one behind), and before
  // enrolling, under the lock, where it is not checked again.
  const gatewayProblem = gateway === undefined ? undefined : gatewayUrlProblem(gateway, gatewayFrom);
  let proxy: ProxySetting | undefined;
  try {
    proxy = proxySettingFrom(values.proxy);
  } catch (e) {
    throw e instanceof UsageError ? new UsageError(e.message, synopsis) : e;
  }
  if (sub === 'enroll') {
    const runOnly = RUN_ONLY.filter((o) => values[o] !== undefined).map((o) => `--${o}`);
    if (runOnly.length) throw new UsageError(`${runOnly.join(' and ')} ${runOnly.length > 1 ? 'are options' : 'is an option'} of connector run, not enroll (give ${runOnly.length > 1 ? 'them' : 'it'} to run)`, ENROLL);
    if (!gateway || !token) throw new UsageError(`${[gateway ? '' : '--gateway', token ? '' : '--token'].filter(Boolean).join(' and ')} ${gateway || token ? 'is' : 'are'} required (or DRAWBRIDGE_GATEWAY and DRAWBRIDGE_TOKEN)`, ENROLL);
    if (gatewayProblem) throw new UsageError(gatewayProblem, ENROLL);
    checkLocally(token, values.ca);
    // Held while the files are written, so a run starting from this dir never reads them half done.
    const held = await holdStateDir(stateDir, createLogger({ name: 'drawbridge-connector' }), { enrolling: true });
    // A second enroll replaced key.pem and cert.pem without a word: the old identity was gone from
    // disk while a connector running from the dir still used it, and the token made another connector.
    if (isEnrolled(stateDir)) throw new ConnectorError('ERR_ALREADY_ENROLLED', `${stateDir} already holds an enrollment${enrolledAs(stateDir)}; it is left as it is. To enroll anew, give an empty --state-dir`);
    const s = await enrollAt(gateway, token, stateDir, { caFile: values.ca, proxy }, held);
    process.stdout.write(`enrolled connector ${s.id} in group ${s.group}; certificate valid until ${s.notAfter}; state in ${stateDir}\n`);
    return 0;
  }
  const { value: transport = 'h2', from: transportFrom } = optionOrEnv(values.transport, 'transport', 'DRAWBRIDGE_CONNECTOR_TRANSPORT');
  if (!(CHANNEL_TRANSPORTS as readonly string[]).includes(transport)) throw new UsageError(`${transportFrom} must be ${CHANNEL_TRANSPORTS.join(' or ')}, not ${JSON.stringify(transport)}`, RUN);
  // Checked before anything starts: a connector that ran with no channels exited 0, and a supervisor took that as done.
  const channels = values.channels === undefined ? undefined : wholeNumberOption('channels', values.channels, 1, MAX_CHANNELS, RUN);
  const drainTimeoutMs = values['drain-timeout'] === undefined ? undefined : drainTimeout(values['drain-timeout']);
  const enrollable = (): { gateway: string; token: string } => {
    if (!gateway || !token) throw new UsageError(`${stateDir} holds no enrollment; give --gateway and --token (or run connector enroll)`, RUN);
    if (gatewayProblem) throw new UsageError(gatewayProblem, RUN);
    checkLocally(token, values.ca);
    return { gateway, token };
  };
  if (!isEnrolled(stateDir)) enrollable();
  const heap = preferThroughputHeap();
  const log = createLogger({ name: 'drawbridge-connector' });
  logHeapGrowth(log, heap);
  const held = await holdStateDir(stateDir, log, { waitMs: (drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS) + 10_000, enrolling: Boolean(gateway && token) && !isEnrolled(stateDir) });
  if (!isEnrolled(stateDir)) {
    // (enrolled by another process since the check above, or not: under the lock this is the answer)
    const to = enrollable();
    const s = await enrollAt(to.gateway, to.token, stateDir, { caFile: values.ca, proxy }, held);
    log.info({ connector: s.id, group: s.group }, 'enrolled');
  }
  warnIfStateDirOpen(stateDir, log, CONNECTOR_LOCK);
  const agent = await asOperational(`cannot read the enrollment in ${stateDir}`, () => openAgent({ stateDir, logger: log, channels, transport: transport as ChannelTransport, drainTimeoutMs, proxy, onEnrollAgain: () => void setTimeout(() => process.exit(1), 50) }), connectorError);
  // --gateway and --token enroll a state dir that holds no enrollment (so one command line serves
  // the first start and every restart); once enrolled, the stored gateway is the one dialled. A
  // different --gateway is an operator who moved the gateway and expects it to be used: say so.
  if (gateway && !sameGateway(gateway, agent.state.gateway)) {
    log.warn({ given: gateway, enrolledWith: agent.state.gateway, stateDir }, `${gatewayFrom} ${gateway} ignored: ${stateDir} is enrolled with ${agent.state.gateway}; to move the connector, enroll it again in an empty state dir`);
  }
  if (agent.proxy) log.info({ proxy: agent.proxy.display, from: agent.proxy.from }, 'reaching the gateway through an HTTP proxy');
  reportProcessFaults(log);
  agent.start();
  onStopSignals(
    log,
    (signal) => {
      log.info({ signal }, 'stopping');
      // A connector started now (a restart) waits for this drain instead of being refused.
      held.lock.markStopping();
      void agent.drain().finally(() => {
        log.flush?.();
        setTimeout(() => process.exit(0), 50);
      });
    },
    'in-flight streams are cut',
  );
  // Operators send SIGHUP to "reload" by habit (as to the gateway), and a closed terminal sends
  // it: by default it killed the connector on the spot, and its in-flight requests got 504.
  process.on('SIGHUP', () => log.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: the connector has nothing to reload (SIGTERM stops it)'));
  return -1;
}

function sameGateway(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return a === b;
  }
}

/** The state dir's lock, and whether this command made the dir (a failed enrollment takes it away again). */
interface HeldStateDir {
  lock: StateDirLock;
  made: boolean;
}

/**
 * One connector process per state dir: a second one is the same connector id with channels of its
 * own, and each renews into the key and certificate files the other started from.
 */
async function holdStateDir(stateDir: string, log: ReturnType<typeof createLogger>, opts: { waitMs?: number; enrolling: boolean }): Promise<HeldStateDir> {
  try {
    const made = !existsSync(stateDir);
    makeStateDir(stateDir);
    return { lock: await StateDirLock.acquire(stateDir, { log, role: CONNECTOR_LOCK, waitMs: opts.waitMs }), made };
  } catch (e) {
    // (the lock is the first file written: a read-only dir fails here, before the token is spent)
    if (e instanceof DrawbridgeError && e.code !== 'ERR_STATE_DIR') throw e;
    const err = e instanceof DrawbridgeError ? e : stateDirUnwritable(stateDir, e);
    throw opts.enrolling ? new ConnectorError(err.code, `${err.message}${TOKEN_UNSPENT}`) : err;
  }
}

/** " (connector c-..., group g1, gateway https://...)" from connector.json, or nothing when it cannot be read. */
function enrolledAs(stateDir: string): string {
  const s = storedEnrollment(stateDir);
  return s ? ` (connector ${s.id}, group ${s.group}, gateway ${s.gateway})` : '';
}

function connectorError(code: string, message: string): ConnectorError {
  return new ConnectorError(code, message);
}

/** An empty variable is an unset one: a service file's `DRAWBRIDGE_CONNECTOR_STATE_DIR=` named a state dir "". */
function fromEnv(name: string): string | undefined {
  return process.env[name] || undefined;
}

/**
 * An option's value, else its variable's, and how to name where it came from: a service that sets
 * DRAWBRIDGE_GATEWAY and gives no option was told to fix a --gateway it never wrote.
 */
function optionOrEnv(option: string | undefined, name: string, variable: string): { value: string | undefined; from: string } {
  return option !== undefined ? { value: option, from: `--${name}` } : { value: fromEnv(variable), from: variable };
}

/**
 * What can be found wrong without the gateway, said before the state dir is made: a token cut
 * short in the copy, a --ca file that cannot be read (and not as the gateway's fault).
 */
function checkLocally(token: string, caFile: string | undefined): void {
  decodeToken(token);
  if (caFile) readCaFile(caFile);
}

/**
 * An unreachable or untrusted gateway is a failed enrollment (a URL that is not one was refused as
 * usage before). A state dir this command made is taken away again then (it is empty: enroll
 * removes what it wrote before the gateway refused): an empty dir left behind by a refused token
 * or an unreachable gateway looked like a half-installed connector.
 */
async function enrollAt(gateway: string, token: string, stateDir: string, how: { caFile?: string; proxy?: ProxySetting }, held: HeldStateDir): Promise<ConnectorState> {
  try {
    return await asOperational(`cannot enroll at ${gateway}`, () => enroll({ gateway, token, stateDir, ...how }), connectorError);
  } catch (e) {
    if (held.made) {
      held.lock.release();
      try {
        rmdirSync(stateDir);
      } catch {
        /* not empty after all: left as it is */
      }
    }
    throw e;
  }
}

/** A state dir whose files were cut short or edited by hand: say which, not where in the parser. */
function openAgent(opts: ConstructorParameters<typeof ConnectorAgent>[0]): ConnectorAgent {
  try {
    return new ConnectorAgent(opts);
  } catch (e) {
    if (e instanceof SyntaxError) throw new ConnectorError('ERR_STATE_UNREADABLE', `${opts.stateDir}/connector.json is not valid JSON (${e.message}); ${ENROLL_AGAIN}`);
    throw e;
  }
}

/** 30s, 2m, or a bare number of milliseconds (what the option took first). */
function drainTimeout(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : parseDuration(text);
  if (ms === undefined || !Number.isSafeInteger(ms)) throw new UsageError(`--drain-timeout must be a duration such as 30s or 2m, not ${JSON.stringify(text)}`, RUN);
  return ms;
}
