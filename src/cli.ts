#!/usr/bin/env node
/** drawbridge: one binary, subcommands. */
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { ConfigInvalidError, ConfigUnreadableError, DrawbridgeError, UsageError, formatProblem, type Problem } from './errors.js';
import { HelpRequest, operationalReason, usageErrorOf, usageText } from './commands/usage.js';

const USAGE = `usage: drawbridge <command> [options]
       drawbridge <command> --help             (or -h) the command's usage

commands:
  gateway [--config FILE] [--no-watch]    serve the gateway (config found by searching up from here when --config is left out);
                                          reloads on file change and on SIGHUP
  lint [FILE...] [--format text|json|github]
                                          check config files; exit 0 valid, 1 invalid, 2 unreadable
  schema [--config FILE]                  print the JSON Schema of gateway.config.yaml
  what-if --config FILE --app NAME [--user U] [--groups a,b] [--ip IP] [--claims JSON] [--at ISO-8601]
          [--client browser|native] [--method M] [--path P] [--user-agent UA] [--signed-in-ago 2h] [--json]
                                          explain the conditional-access decision; exit 0 allow, 3 deny, 4 step-up
  test-policies FILE.yaml [--config FILE] [--json]
                                          run expected decisions (CI); exit 0 all pass, 1 a case failed,
                                          2 the cases or the config cannot be used
  demo [--config FILE]                    run the demo: sample app and gateway on localhost
  token create --group NAME [--ttl 1h] [--config FILE]
                                          print a one-time connector enrollment token
  connector enroll --gateway URL --token TOKEN [--state-dir DIR] [--ca FILE] [--proxy URL]
  connector run [--state-dir DIR] [--channels 1-16] [--transport h2|websocket] [--drain-timeout 30s]
                [--proxy URL] [--gateway URL --token TOKEN [--ca FILE]]
                                          run an outbound-only connector, 2 channels unless --channels says
                                          (enrolls first when the state dir is empty)
  connectors [--config FILE] [--json]     list the connectors connected to the running gateway
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'lint':
      return (await import('./commands/lint.js')).lintCommand(rest);
    case 'schema':
      return (await import('./commands/schema.js')).schemaCommand(rest);
    case 'gateway':
      return (await import('./commands/gateway.js')).gatewayCommand(rest);
    case 'token':
      return (await import('./commands/token.js')).tokenCommand(rest);
    case 'connector':
      return (await import('./commands/connector.js')).connectorCommand(rest);
    case 'connectors':
      return (await import('./commands/connectors.js')).connectorsCommand(rest);
    case 'demo':
      return (await import('./demo/demo.js')).demoCommand(rest);
    case 'what-if':
      return (await import('./commands/whatIf.js')).whatIfCommand(rest);
    case 'test-policies':
      return (await import('./commands/testPolicies.js')).testPoliciesCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command ? 0 : 2;
    default:
      process.stderr.write(`drawbridge: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

export function printProblems(problems: readonly Problem[], stream: NodeJS.WritableStream = process.stderr): void {
  for (const p of problems) stream.write(formatProblem(p) + '\n');
}

export { parseArgs };

/** The command as users name it in messages: `connector enroll`, `token create`, `lint`. */
function commandName(argv: readonly string[]): string {
  const [command, sub] = argv;
  const known = command === 'connector' ? ['enroll', 'run'] : command === 'token' ? ['create'] : [];
  return sub && known.includes(sub) ? `${command} ${sub}` : (command ?? '');
}

/**
 * Bad usage and expected failures are one line and an exit code; a stack trace is for
 * bugs (anything that is not one of the project's errors or a failure of the world
 * around it), or for every error with DRAWBRIDGE_DEBUG=1.
 */
export function reportFailure(e: unknown, command: string, stream: NodeJS.WritableStream = process.stderr): number {
  if (e instanceof HelpRequest) {
    process.stdout.write(usageText(e.usage));
    return 0;
  }
  const prefix = `drawbridge ${command}: `;
  const debug = process.env.DRAWBRIDGE_DEBUG === '1' && e instanceof Error ? `${e.stack}\n` : '';
  const usage = e instanceof UsageError ? e : usageErrorOf(e);
  if (usage) {
    // A UsageError without a usage is an environment variable's (DRAWBRIDGE_LOG_LEVEL,
    // DRAWBRIDGE_PLUGIN_TIMEOUT): the command line was right, so its line stands alone, where a
    // placeholder "usage: drawbridge help" followed it, naming no command's options.
    stream.write(`${prefix}${usage.message}\n${usage.usage === undefined ? '' : usageText(usage.usage)}${debug}`);
    return 2;
  }
  if (e instanceof ConfigInvalidError) {
    printProblems(e.problems, stream);
    stream.write(debug);
    return 1;
  }
  if (e instanceof DrawbridgeError) {
    stream.write(`${prefix}${e.message}\n${debug}`);
    return e instanceof ConfigUnreadableError ? 2 : 1;
  }
  const reason = operationalReason(e);
  if (reason !== undefined) {
    stream.write(`${prefix}${reason}\n${debug}`);
    return 1;
  }
  stream.write(`drawbridge: ${(e as Error)?.stack ?? e}\n`);
  return 1;
}

const argv = process.argv.slice(2);
let finished = false;
// Node exits, with 0, once nothing is left that could wake it, even while main() still waits: a
// plugin whose import or create() awaits what never comes made lint pass a CI gate in silence,
// and the gateway stop "cleanly" before it listened (a supervisor does not restart that).
process.on('beforeExit', () => {
  if (finished) return;
  process.stderr.write(`drawbridge ${commandName(argv)}: stopped before finishing: it was waiting on something that can no longer happen (a plugin whose import or create() never settles?)\n`);
  process.exit(1);
});
/**
 * Exits once what was written to stdout and stderr has left: into a pipe its reader has not
 * emptied yet, the rest waits in the process, and exit() dropped it (lint's JSON was cut at the
 * pipe's size). A reader that never reads does not hold the exit past OUTPUT_WAIT_MS.
 */
function exitAfterOutput(code: number): void {
  let pending = 2;
  const done = () => void (--pending === 0 && process.exit(code));
  process.stdout.write('', done);
  process.stderr.write('', done);
  setTimeout(() => process.exit(code), OUTPUT_WAIT_MS).unref();
}
const OUTPUT_WAIT_MS = 10_000;

main(argv).then(
  (code) => {
    finished = true;
    // A one-shot command (a code of 0 or more; the servers return -1 and run on) ends when it
    // is done: a plugin lint imported may keep a timer of its own, and lint then never exited.
    if (code !== undefined && code >= 0) exitAfterOutput(code);
  },
  (e) => {
    finished = true;
    // Ends now: a failed start may leave a plugin's timer or socket open (a module may open them
    // when it is imported), and the process ran on without a listener, never reporting its exit.
    exitAfterOutput(reportFailure(e, commandName(argv)));
  },
);
