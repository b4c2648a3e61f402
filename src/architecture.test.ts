/**
 * The dependency rules of docs/architecture.md, enforced: a change that breaks one fails here.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sourceFiles(rel);
    return rel.endsWith('.ts') ? [rel] : [];
  });
}

type File = { path: string; imports: string[]; text: string };

function load(rel: string): File {
  const text = readFileSync(path.join(ROOT, rel), 'utf8');
  const imports = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)]
    .map((m) => m[1] ?? '')
    .map((spec) => (spec.startsWith('.') ? path.join(path.dirname(rel), spec) : spec));
  return { path: rel, imports, text };
}

const files = ['src', 'db', 'workers', 'bin']
  .flatMap((d) => {
    try {
      return sourceFiles(d);
    } catch {
      return [];
    }
  })
  .filter((f) => !f.endsWith('.test.ts'))
  .map(load);

const inDir = (f: File, ...dirs: string[]) => dirs.some((d) => f.path.startsWith(`${d}/`));
const violations = (predicate: (f: File) => string[]) =>
  files.flatMap((f) => predicate(f).map((v) => `${f.path} → ${v}`));

describe('architecture rules', () => {
  it('finds the source files', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it('only the HTTP layer imports express', () => {
    const allowed = (f: File) => inDir(f, 'src/http', 'src/testing') || f.path === 'src/app.ts';
    expect(violations((f) => (allowed(f) ? [] : f.imports.filter((i) => i === 'express')))).toEqual(
      [],
    );
  });

  it('domain modules and platform never import the HTTP layer or the CLI', () => {
    const domain = (f: File) =>
      inDir(
        f,
        'src/keys',
        'src/orgs',
        'src/audit',
        'src/usage',
        'src/policies',
        'src/webhooks',
        'src/platform',
      );
    const adapters = ['src/http', 'src/cli'];
    expect(
      violations((f) =>
        domain(f) ? f.imports.filter((i) => adapters.some((a) => i.startsWith(a))) : [],
      ),
    ).toEqual([]);
  });

  it('only bin/ (and tests) run the CLI; the CLI never imports the HTTP routes', () => {
    expect(
      violations((f) =>
        inDir(f, 'src') && !inDir(f, 'src/cli', 'src/testing')
          ? f.imports.filter((i) => i.startsWith('src/cli'))
          : [],
      ),
    ).toEqual([]);
    expect(
      violations((f) =>
        inDir(f, 'src/cli')
          ? f.imports.filter((i) => i.startsWith('src/http/routes') || i === 'express')
          : [],
      ),
    ).toEqual([]);
  });

  it('platform knows no domain', () => {
    const domainDirs = ['src/keys', 'src/orgs', 'src/audit', 'src/usage', 'src/http'];
    expect(
      violations((f) =>
        inDir(f, 'src/platform')
          ? f.imports.filter((i) => domainDirs.some((d) => i.startsWith(d)))
          : [],
      ),
    ).toEqual([]);
  });

  it('migrations import nothing from src/', () => {
    expect(
      violations((f) =>
        inDir(f, 'db/migrations') ? f.imports.filter((i) => i.startsWith('src')) : [],
      ),
    ).toEqual([]);
  });

  it('nothing in src/ imports workers/', () => {
    expect(
      violations((f) => (inDir(f, 'src') ? f.imports.filter((i) => i.startsWith('workers')) : [])),
    ).toEqual([]);
  });

  it('SQL lives only in *.queries.ts, db/, platform/ and testing/', () => {
    const sqlish = /\bsql`|\.(selectFrom|insertInto|updateTable|deleteFrom)\(/;
    const allowed = (f: File) =>
      f.path.endsWith('.queries.ts') || inDir(f, 'db', 'src/platform', 'src/testing');
    expect(violations((f) => (!allowed(f) && sqlish.test(f.text) ? ['SQL'] : []))).toEqual([]);
  });

  it('only entry points and config read process.env', () => {
    const allowed = new Set(['src/main.ts', 'src/platform/config.ts', 'workers/main.ts']);
    const reads = (f: File) =>
      /process\.env\b/.test(f.text) && !allowed.has(f.path) && !inDir(f, 'bin', 'src/testing', 'db')
        ? ['process.env']
        : [];
    expect(violations(reads)).toEqual([]);
  });
});
