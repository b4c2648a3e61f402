/**
 * The admin UI bundle (SPEC §7: JS + CSS ≤ 60 KB gzipped): sizes of a fresh build, raw and
 * gzipped (level 9, what a server or CDN would send), and the build time (median of 5).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildUi, UI_DIST } from '../src/ui/build.ts';
import type { Section } from './lib.ts';

const BUDGET_BYTES = 60 * 1024;

export async function uiScenario(): Promise<Section> {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = performance.now();
    await buildUi({ force: true });
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const sizes = await Promise.all(
    ['app.js', 'app.css'].map(async (name) => {
      const body = await readFile(path.join(UI_DIST, name));
      return { name, raw: body.length, gzip: gzipSync(body, { level: 9 }).length };
    }),
  );
  const total = sizes.reduce((sum, s) => sum + s.gzip, 0);
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
  return {
    title: 'Admin UI bundle',
    lines: [
      `One esbuild call (\`src/ui/build.ts\`), minified; build time ${times[2]?.toFixed(0)} ms (median of 5).`,
      '',
      '| file | raw | gzip -9 |',
      '|---|---|---|',
      ...sizes.map((s) => `| ${s.name} | ${kb(s.raw)} | ${kb(s.gzip)} |`),
    ],
    verdicts: [
      {
        claim: 'admin UI JS + CSS, gzipped',
        target: '≤ 60 KB',
        value: kb(total),
        pass: total <= BUDGET_BYTES,
      },
    ],
  };
}
