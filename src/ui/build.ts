/**
 * Bundles the admin web app (src/ui/main.tsx, styles.css, index.html) into dist/ui with one
 * esbuild call: minified ES2022, no source maps, nothing fetched at run time but our own API.
 * `make start` and the test harness run it when a source is newer than the bundle; `npm pack`
 * always does, so the package serves /admin.
 */
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';

const HERE = import.meta.dirname;
export const UI_DIST = path.resolve(HERE, '..', '..', 'dist', 'ui');

async function newestSource(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || entry.name.endsWith('.test.ts')) continue;
    newest = Math.max(newest, (await stat(path.join(entry.parentPath, entry.name))).mtimeMs);
  }
  return newest;
}

/** Builds when the bundle is missing or older than a source; returns whether it built. */
export async function buildUi(options: { force?: boolean } = {}): Promise<boolean> {
  const marker = path.join(UI_DIST, 'app.js');
  const built = await stat(marker).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  if (!options.force && built > (await newestSource(HERE))) return false;
  await mkdir(UI_DIST, { recursive: true });
  await build({
    entryPoints: { app: path.join(HERE, 'main.tsx') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: UI_DIST,
    logLevel: 'warning',
    legalComments: 'none',
  });
  await copyFile(path.join(HERE, 'index.html'), path.join(UI_DIST, 'index.html'));
  return true;
}

if (process.argv[1] === import.meta.filename) {
  const built = await buildUi({ force: process.argv.includes('--force') });
  process.stdout.write(built ? `admin UI built in ${UI_DIST}\n` : 'admin UI up to date\n');
}
