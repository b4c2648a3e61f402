/**
 * The library surface. `createKeytrail(config)` wires the services; `kt.requireKey()` protects
 * routes of any Express app; `buildApp(kt)` is the whole keytrail HTTP API.
 */
export { createKeytrail, type Keytrail, type KeytrailOptions } from './keytrail.ts';
export { buildApp } from './app.ts';
export { configFromEnv, parseEnv, toConfig, type Config } from './platform/config.ts';
export { migrateToLatest } from './platform/db.ts';
export type { RequireKeyOptions } from './http/middleware/require-key.ts';
export type { ApiKey, KeyIdentity, KeyStatus, VerifyCode } from './keys/keys.types.ts';
