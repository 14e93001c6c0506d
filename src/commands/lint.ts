import { ConfigUnreadableError, formatProblem, type Problem } from '../errors.js';
import { discoverConfig, loadConfigFile } from '../config/load.js';
import { UsageError } from '../errors.js';
import { parseCommandArgs } from './usage.js';

const USAGE = 'drawbridge lint [FILE...] [--format text|json|github]';

/** exit 0: every file valid (warnings allowed); 1: a file is invalid; 2: a file can't be read or parsed */
export async function lintCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args, allowPositionals: true, options: { format: { type: 'string', default: 'text' } } }, USAGE);
  const format = values.format!;
  if (!['text', 'json', 'github'].includes(format)) throw new UsageError(`--format must be text, json or github, not ${JSON.stringify(format)}`, USAGE);
  const files = positionals.length ? positionals : [await discoverConfig()].filter((f): f is string => !!f);
  if (!files.length) {
    process.stderr.write('drawbridge lint: no file given and no gateway.config.yaml found\n');
    return 2;
  }
  let exit = 0;
  const all: Problem[] = [];
  for (const file of files) {
    try {
      const r = await loadConfigFile(file, { mode: 'lint' });
      all.push(...r.problems);
      if (!r.config) exit = Math.max(exit, 1);
    } catch (e) {
      if (!(e instanceof ConfigUnreadableError)) throw e;
      const line = (e as ConfigUnreadableError).line;
      const col = (e as ConfigUnreadableError).col;
      all.push({ severity: 'error', message: e.message.replace(/^.*?: (?=not valid YAML)/, '').replace(`cannot read ${file}: `, 'cannot read the file: '), path: '', file, line: line ?? 1, col: col ?? 1 });
      exit = 2;
    }
  }
  const errors = all.filter((p) => p.severity === 'error').length;
  const warnings = all.length - errors;
  if (format === 'json') {
    // files: what was checked, also when it was found by searching (a clean file has no problem to name it)
    process.stdout.write(JSON.stringify({ valid: exit === 0, files, errors, warnings, problems: all }, null, 2) + '\n');
  } else if (format === 'github') {
    for (const p of all) {
      const msg = escapeData(`${p.path ? p.path + ': ' : ''}${p.message}`);
      // A property ends at , and the properties at :, so a file named a,line=99.yaml set a second line=.
      const file = escapeData(p.file ?? '').replace(/:/g, '%3A').replace(/,/g, '%2C');
      process.stdout.write(`::${p.severity} file=${file},line=${p.line},col=${p.col}::${msg}\n`);
    }
  } else {
    for (const p of all) process.stdout.write(formatProblem(p) + '\n');
    // Named, since the file may have been found by searching upwards from the working directory.
    process.stderr.write(`${files.length} file(s): ${errors} error(s), ${warnings} warning(s) (${files.join(', ')})\n`);
  }
  return exit;
}

/** GitHub's escaping of a workflow command's data: a raw line break would start a command of its own. */
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
