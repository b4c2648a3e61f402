/**
 * `make citus` without Citus: with neither an installed Citus nor its source tarball, the script
 * says how to get Citus and exits 1 (it never builds or starts anything then). The cluster itself
 * is started and stopped by .ci/run where Citus or its tarball is present.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = path.resolve(import.meta.dirname, '..', 'scripts', 'citus.sh');
const scratch = mkdtempSync(path.join(tmpdir(), 'keytrail-citus-script-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A PostgreSQL "installation" whose library folder has no citus.so. */
function postgresWithoutCitus(): string {
  const bin = path.join(scratch, 'bin');
  const lib = path.join(scratch, 'lib');
  mkdirSync(bin, { recursive: true });
  mkdirSync(lib, { recursive: true });
  const stub = (name: string, body: string) => {
    writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(bin, name), 0o755);
  };
  stub('pg_ctl', 'exit 3');
  stub('pg_config', `[ "$1" = --pkglibdir ] && echo ${lib} || echo "PostgreSQL 15.0"`);
  return bin;
}

describe('make citus without Citus', () => {
  it('says how to get Citus and exits 1, starting nothing', () => {
    const result = spawnSync('bash', [script, 'start'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        KEYTRAIL_CITUS_PG_BIN: postgresWithoutCitus(),
        KEYTRAIL_CITUS_TARBALL: path.join(scratch, 'no-such-citus.tar.gz'),
        KEYTRAIL_CITUS_DIR: path.join(scratch, 'cluster'),
      },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Citus is not installed');
    expect(result.stderr).toContain('Install Citus 12.1');
    expect(result.stdout).not.toContain('DATABASE_URL');
  });
});
