import { jsonSchema } from '../config/schema.js';
import { loadConfigFile } from '../config/load.js';
import { formatProblem } from '../errors.js';
import { BUILTIN_PLUGINS } from '../plugins/registry.js';
import { parseCommandArgs } from './usage.js';

/**
 * Prints the JSON Schema; with --config, plugins listed there contribute their option schemas.
 * A plugin it cannot find or load is said on stderr: its options would be missing from the
 * schema without a word. Other problems in the file are lint's business.
 */
export async function schemaCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string', short: 'c' } } }, 'drawbridge schema [--config FILE]');
  const schemas: Record<string, any> = {};
  let plugins = BUILTIN_PLUGINS;
  let failed = false;
  if (values.config) {
    const loaded = await loadConfigFile(values.config, { mode: 'lint' });
    plugins = loaded.plugins.map((l) => l.plugin);
    for (const p of loaded.problems) {
      if (!/^plugins\[\d+\]$/.test(p.path)) continue;
      process.stderr.write(formatProblem(p) + '\n');
      failed ||= p.severity === 'error';
    }
  }
  // Nothing on stdout then: `schema --config f > schema.json` would overwrite the file with a schema missing a plugin's options.
  if (failed) return 1;
  for (const p of plugins) if (p.kind === 'sso') schemas[p.name] = p.optionsSchema;
  process.stdout.write(JSON.stringify(jsonSchema(schemas), null, 2) + '\n');
  return 0;
}
