/**
 * What every command shares at its edges: reading its arguments, and telling bad usage
 * and failures of the world around it (exit 2 and 1, one line) from bugs (a stack trace).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DrawbridgeError, OperationalError, UsageError } from '../errors.js';
import { STATE_WRITE_FAILURES } from '../config/stateFile.js';

/**
 * `--help` or `-h` on a command: not an error, but it ends the command the same way, before it
 * does anything; the CLI prints the usage on stdout and exits 0.
 */
export class HelpRequest extends Error {
  constructor(readonly usage: string) {
    super('help requested');
  }
}

/** The usage text as printed, whether or not the command's string starts with `usage:`. */
export function usageText(usage: string): string {
  const text = /^usage:/.test(usage) ? usage : `usage: ${usage}`;
  return text.endsWith('\n') ? text : `${text}\n`;
}

/**
 * parseArgs, strict, with its errors as one-line UsageErrors that carry the command's usage;
 * every command takes --help and -h (a HelpRequest).
 */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T>> {
  let parsed: ReturnType<typeof parseArgs<T>> & { tokens?: { kind: string; name?: string }[] };
  const options = { ...config.options, help: { type: 'boolean', short: 'h' } } as NonNullable<ParseArgsConfig['options']>;
  try {
    parsed = parseArgs({ ...config, options, tokens: true }) as typeof parsed;
  } catch (e) {
    throw usageErrorOf(e, usage) ?? e;
  }
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequest(usage);
  // parseArgs keeps the last of two values: `--group a --group b` made a token for b, and
  // `--format json --format text` printed text to a parser that expects JSON, without a word.
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || !t.name || options[t.name]?.multiple) continue;
    if (seen.has(t.name)) throw new UsageError(`--${t.name} is given twice${options[t.name]?.type === 'string' ? ' (it takes one value)' : ''}`, usage);
    seen.add(t.name);
  }
  delete parsed.tokens;
  return parsed;
}

/** A subcommand's `--help`/`-h` where a subcommand is expected (`connector --help`, `token -h`). */
export function isHelp(arg: string | undefined): boolean {
  return arg === '--help' || arg === '-h';
}

/**
 * Node's parseArgs messages run to three lines with advice about '--'; the user needs the
 * option and what is wrong with it.
 */
export function usageErrorOf(e: unknown, usage?: string): UsageError | undefined {
  const code = (e as { code?: unknown })?.code;
  const message = String((e as Error)?.message ?? '');
  // Node names an option with a short alias as '-g, --group <value>': the long name is the one to show.
  const option = /'(?:-[^-' ,], )?(-[^' ,]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${option ?? message}`, usage);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/ambiguous/.test(message)) return new UsageError(`${option} is followed by an option, not a value (write ${option}=VALUE for a value that starts with '-')`, usage);
      if (/missing/.test(message)) return new UsageError(`${option} needs a value`, usage);
      return new UsageError(`${option ?? 'an option'} takes no value`, usage);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? message}`, usage);
    default:
      return undefined;
  }
}

/** A whole number in [min, max] from an option's text; UsageError otherwise. */
export function wholeNumberOption(name: string, text: string, min: number, max: number, usage: string): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(text)}`, usage);
  return n;
}

/** Codes of certificate checks that failed on a peer's chain (OpenSSL's verify results, as Node names them). */
const UNTRUSTED_CERT = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
]);

/**
 * The one-line reason for a failure of the world around the program (a system call that
 * failed, a TLS peer that cannot be trusted, a certificate that cannot be parsed, a URL
 * that is not one), or undefined for anything else, which is a bug and keeps its stack.
 */
export function operationalReason(e: unknown): string | undefined {
  if (!(e instanceof Error)) return undefined;
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string; input?: string };
  const code = err.code;
  if (typeof code !== 'string') return undefined;
  const where = err.address !== undefined ? `${err.address}${err.port !== undefined ? `:${err.port}` : ''}` : undefined;
  if (err.syscall) {
    if (code === 'EADDRINUSE') return `${where ?? 'the address'} is already in use`;
    if (code === 'EADDRNOTAVAIL') return `${where ?? 'the address'} is not an address of this machine`;
    if (code === 'EACCES' && err.syscall === 'listen') return `not allowed to listen on ${where ?? 'that port'}`;
    if (code === 'ENOENT') return `${err.path ?? 'a file'}: no such file or directory`;
    if (code === 'EISDIR') return err.path ? `${err.path} is a directory, not a file` : 'a path names a directory where a file belongs';
    if (code === 'EACCES' || code === 'EPERM') return `${err.path ?? 'a file'}: permission denied`;
    // a stateDir (or a folder in it) that cannot be made; Node's own words read "EEXIST: file already exists, mkdir ..."
    if (code === 'EEXIST' && err.syscall === 'mkdir') return `${err.path ?? 'a folder'} is a file, not a directory`;
    if (code === 'ENOTDIR') return `${err.path ?? 'a path'}: a part of it is a file, not a directory`;
    if (code === 'EROFS' || code === 'ENOSPC') return `${err.path ?? 'a file'}: ${STATE_WRITE_FAILURES[code]}`;
    if (code === 'ECONNREFUSED') return `${where ?? 'the peer'} refused the connection`;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve ${err.hostname ?? 'the host name'}`;
    // Other system errors (ETIMEDOUT, ECONNRESET, EDQUOT, ...): Node's message is already one line.
    return err.message;
  }
  // (the only TLS peer the CLI checks by name is the gateway's connectors listener)
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the certificate does not name the host: ${err.message.replace(/^Hostname\/IP does not match certificate's altnames: /, '')} (a name to dial the gateway by goes in its connectors.serverNames)`;
  // (an operator with a CA of their own for the public listener gave that one)
  if (UNTRUSTED_CERT.has(code)) return `the certificate is not trusted (${err.message}): --ca must be the gateway's connector CA, the ca.pem in its stateDir's connectors/ folder, not the CA of its public listener`;
  if (code.startsWith('ERR_OSSL_') || code.startsWith('ERR_SSL_')) return `a certificate or key cannot be used (${err.message})`;
  if (code.startsWith('ERR_TLS_')) return err.message;
  if (code === 'ERR_INVALID_URL') return `not a URL: ${JSON.stringify(err.input ?? '')}`;
  // A peer that accepts the connection and closes it during the TLS handshake (a load balancer with
  // no backend, a service on the wrong port, a proxy's tunnel that ends): Node's error carries no
  // syscall, and it was a stack trace.
  if (code === 'ECONNRESET' && /before secure TLS connection/.test(err.message)) return 'the connection was closed before the TLS handshake finished: is this the connectors.listen endpoint?';
  if (code === 'ECONNRESET' && /^socket hang up$/.test(err.message)) return 'the connection was closed before an answer came';
  if (SAID_IN_OWN_WORDS.has(code)) return err.message;
  return undefined;
}

/**
 * Codes of network errors the project makes itself, whose message is already the reason: the
 * outbound proxy's (it names the proxy and what it said), an answer cut short.
 */
const SAID_IN_OWN_WORDS = new Set(['ERR_PROXY', 'ERR_ANSWER_CUT_SHORT']);

/**
 * Runs a step that talks to the world; a failure of the world becomes an OperationalError
 * whose message says what was being done, the project's own errors and bugs pass as they are.
 */
export async function asOperational<T>(doing: string, step: () => Promise<T> | T, wrap: (code: string, message: string) => DrawbridgeError = (code, message) => new OperationalError(code, message)): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof DrawbridgeError) throw e;
    const reason = operationalReason(e);
    if (reason === undefined) throw e;
    throw wrap(String((e as NodeJS.ErrnoException).code), `${doing}: ${reason}`);
  }
}
