import { jsonSchema } from '../config/schema.js';
import { loadConfigFile } from '../config/load.js';
import { BUILTIN_PLUGINS } from '../plugins/registry.js';
import { parseCommandArgs } from './usage.js';

/** Prints the JSON Schema; with --config, plugins listed there contribute their option schemas. */
export async function schemaCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args, options: { config: { type: 'string' } } }, 'drawbridge schema [--config FILE]');
  const schemas: Record<string, any> = {};
  const plugins = values.config ? (await loadConfigFile(values.config, { mode: 'lint' })).plugins.map((l) => l.plugin) : BUILTIN_PLUGINS;
  for (const p of plugins) if (p.kind === 'sso') schemas[p.name] = p.optionsSchema;
  process.stdout.write(JSON.stringify(jsonSchema(schemas), null, 2) + '\n');
  return 0;
}
