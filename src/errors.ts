/**
 * Errors with stable codes. Callers branch on `code`, never on message text,
 * so messages can improve without breaking anyone.
 */
export class DrawbridgeError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.details = Object.freeze({ ...details });
  }
}

export interface Problem {
  severity: 'error' | 'warning';
  message: string;
  /** key path in the config, e.g. apps[2].sso.options.servicePrincipal */
  path: string;
  file?: string;
  line?: number;
  col?: number;
}

/** The config was read but is not acceptable; `problems` lists every reason. */
export class ConfigInvalidError extends DrawbridgeError {
  readonly problems: readonly Problem[];
  constructor(problems: Problem[], file?: string) {
    const errors = problems.filter((p) => p.severity === 'error');
    super('ERR_CONFIG_INVALID', `${file ?? 'config'}: ${errors.length} problem(s)\n${errors.map(formatProblem).join('\n')}`, { file });
    this.problems = Object.freeze(problems.slice());
  }
}

/** The config file could not be read or is not YAML at all. */
export class ConfigUnreadableError extends DrawbridgeError {
  constructor(message: string, file?: string, readonly line?: number, readonly col?: number) {
    super('ERR_CONFIG_UNREADABLE', message, { file, line, col });
  }
}

export class PluginError extends DrawbridgeError {}

/** What the connector says of its state dir, its enrollment and its dials to the gateway. */
export class ConnectorError extends DrawbridgeError {}

export function formatProblem(p: Problem): string {
  const where = p.file ? `${p.file}:${p.line ?? 1}:${p.col ?? 1}: ` : '';
  const path = p.path ? `${p.path}: ` : '';
  return `${where}${p.severity}: ${path}${p.message}`;
}

/**
 * The command line is wrong: an unknown option, a missing or malformed value, an extra argument.
 * The CLI prints the message and `usage`, and exits 2.
 */
export class UsageError extends DrawbridgeError {
  constructor(message: string, readonly usage?: string) {
    super('ERR_USAGE', message);
  }
}

/**
 * A failure of the world around the program, not of the program: a port in use, a file that
 * cannot be read, a peer that refused or cannot be trusted. The CLI prints the message alone
 * (no stack trace) and exits 1. `code` is the cause's (EADDRINUSE, ERR_TLS_CERT_ALTNAME_INVALID, ...).
 */
export class OperationalError extends DrawbridgeError {}

/** A pipeline stage returned a decision the contract does not allow (the request fails with 500). */
export class InvalidDecisionError extends DrawbridgeError {
  constructor(problem: string) {
    super('ERR_INVALID_DECISION', `invalid decision: ${problem}`);
  }
}
