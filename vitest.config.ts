import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'db/**/*.test.ts', 'workers/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['src/testing/global-setup.ts'],
    pool: 'forks',
    // Real Postgres, real processes, two shared cores (and coverage in CI): generous bounds that
    // only a hung test reaches.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real Postgres and real HTTP; two cores: a little parallelism, not a stampede.
    maxWorkers: 3,
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts', 'workers/**/*.ts'],
      exclude: [
        '**/*.test.ts',
        'src/testing/**',
        // The admin UI runs in Chromium (test/admin.browser.test.ts), out of v8's sight here;
        // its pure helpers (format, route, usage-query) have unit tests all the same.
        'src/ui/**',
      ],
      reporter: ['text-summary', 'text', 'html'],
      thresholds: { lines: 95, statements: 95, branches: 85 },
    },
  },
});
