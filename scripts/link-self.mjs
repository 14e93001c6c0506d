// Makes `npx drawbridge` and `import('drawbridge')` work inside this checkout:
// npm links the bins of dependencies, never the package's own.
import { chmodSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const link = (target, path) => {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true, recursive: false });
  symlinkSync(relative(dirname(path), target), path);
};
chmodSync(join(root, 'dist/src/cli.js'), 0o755);
link(join(root, 'dist/src/cli.js'), join(root, 'node_modules/.bin/drawbridge'));
link(root, join(root, 'node_modules/drawbridge'));
