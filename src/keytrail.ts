import type { Config } from './platform/config.ts';
import { systemClock, type Clock } from './platform/clock.ts';
import { createDb, type DbHandle } from './platform/db.ts';
import { createLogger, type Logger } from './platform/logger.ts';
import { listen, type Listener } from './platform/notify.ts';
import { KeyCache } from './keys/key-cache.ts';
import { createKeyAuthenticator, type KeyAuthenticator } from './keys/keys.auth.ts';
import { KEY_CHANGED_CHANNEL } from './keys/keys.queries.ts';
import { createKeysService, type KeysService } from './keys/keys.service.ts';
import { createOrgsService, type OrgsService } from './orgs/orgs.service.ts';
import { createRequireKey, type RequireKey } from './http/middleware/require-key.ts';

export type Keytrail = {
  config: Config;
  logger: Logger;
  clock: Clock;
  database: DbHandle;
  cache: KeyCache;
  auth: KeyAuthenticator;
  keys: KeysService;
  orgs: OrgsService;
  /** Express middleware factory: `app.use(kt.requireKey({ scopes: ['orders:read'] }))`. */
  requireKey: RequireKey;
  /** Resolves once cross-instance cache invalidation is listening. */
  ready(): Promise<void>;
  close(): Promise<void>;
};

export type KeytrailOptions = { logger?: Logger; clock?: Clock };

/** Wires the services of one keytrail instance. It opens a pool and one LISTEN connection. */
export function createKeytrail(config: Config, options: KeytrailOptions = {}): Keytrail {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const clock = options.clock ?? systemClock;
  const database = createDb({ url: config.databaseUrl, poolSize: config.dbPoolSize, logger });
  const cache = new KeyCache(config.keyCache);
  const deps = { db: database.db, clock, cache, pepper: config.keyPepper };
  const auth = createKeyAuthenticator(deps);
  const keys = createKeysService({ ...deps, maxKeysPerOrg: config.maxKeysPerOrg });
  const orgs = createOrgsService({ db: database.db, clock, keys });
  const listener: Listener = listen({
    url: config.databaseUrl,
    channel: KEY_CHANGED_CHANNEL,
    logger,
    onMessage: (keyId) => cache.invalidate(keyId),
    // Notifications missed while disconnected cannot be replayed: start from a clean cache.
    onReconnect: () => cache.clear(),
  });
  return {
    config,
    logger,
    clock,
    database,
    cache,
    auth,
    keys,
    orgs,
    requireKey: createRequireKey({ auth, logger }),
    ready: () => listener.ready,
    async close() {
      await listener.close();
      await database.close();
    },
  };
}
