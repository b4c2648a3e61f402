import type { Migration } from 'kysely/migration';
import * as m0001 from './0001_keys.ts';
import * as m0002 from './0002_usage.ts';
import * as m0003 from './0003_daily_org_index.ts';
import * as m0004 from './0004_rollup_write_path.ts';
import * as m0005 from './0005_key_expiry_audit.ts';
import * as m0006 from './0006_event_identity_per_org.ts';
import * as m0007 from './0007_prune_watermark.ts';
import * as m0008 from './0008_dormant_key_policies.ts';
import * as m0009 from './0009_webhooks.ts';
import * as m0010 from './0010_webhook_hardening.ts';
import * as m0011 from './0011_key_limits.ts';
import * as m0012 from './0012_admin_pages.ts';
import * as m0013 from './0013_spiking_keys.ts';
import * as m0014 from './0014_org_keyed.ts';

/** Every migration, in order. A static list works the same from source, tests and bundles. */
export const migrations: Record<string, Migration> = {
  '0001_keys': m0001,
  '0002_usage': m0002,
  '0003_daily_org_index': m0003,
  '0004_rollup_write_path': m0004,
  '0005_key_expiry_audit': m0005,
  '0006_event_identity_per_org': m0006,
  '0007_prune_watermark': m0007,
  '0008_dormant_key_policies': m0008,
  '0009_webhooks': m0009,
  '0010_webhook_hardening': m0010,
  '0011_key_limits': m0011,
  '0012_admin_pages': m0012,
  '0013_spiking_keys': m0013,
  '0014_org_keyed': m0014,
};
