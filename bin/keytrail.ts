#!/usr/bin/env node
/**
 * The keytrail CLI. Run with the project's Node 24: `npm run keytrail -- <command>`. The commands
 * live in src/cli/; this entry point gives them the process, and wires `serve` and `worker`,
 * whose worker comes from workers/ (which src/ never imports).
 */
import { runCli } from '../src/cli/cli.ts';
import { migrate, openRuntime, serve, work } from '../src/main.ts';
import { startWorker } from '../workers/main.ts';

// serve and worker keep running after their start resolves; every other command ends here.
let running = false;
const code = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  openRuntime: async (env) => {
    // Commands print their output on stdout; their logs go to stderr.
    const runtime = await openRuntime(env, { logDestination: process.stderr });
    return { config: runtime.config, migrate: () => migrate(runtime), stop: () => runtime.stop() };
  },
  serve: async ({ worker }) => {
    await serve(worker ? { startWorker } : {});
    running = true;
  },
  work: async () => {
    await work(startWorker);
    running = true;
  },
});
// On Linux, writes to pipes and files are synchronous: exiting loses no output.
if (!running) process.exit(code);
