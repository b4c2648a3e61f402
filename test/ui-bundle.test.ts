/**
 * The admin UI's size budget (SPEC §7: JS + CSS ≤ 60 KB gzipped) on the bundle global setup
 * just built; `make bench-ui` reports the same figures with the build time.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { UI_DIST } from '../src/ui/build.ts';

describe('admin UI bundle', () => {
  it('stays within 60 KB of JS and CSS, gzipped, and loads nothing from elsewhere', async () => {
    const files = await Promise.all(
      ['app.js', 'app.css'].map((name) => readFile(path.join(UI_DIST, name))),
    );
    const gzipped = files.reduce((sum, body) => sum + gzipSync(body, { level: 9 }).length, 0);
    expect(gzipped).toBeLessThanOrEqual(60 * 1024);
    const html = await readFile(path.join(UI_DIST, 'index.html'), 'utf8');
    // Our own files only: no CDN, no external font or script.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(files.map((f) => f.toString()).join('')).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
  });
});
