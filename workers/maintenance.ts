import type { Keytrail } from '../src/keytrail.ts';
import { ensurePartitionsAhead } from '../src/usage/usage.partitions.ts';

/** Daily upkeep: partitions for this month and the next two exist before events arrive. */
export async function runMaintenance(kt: Keytrail): Promise<void> {
  await ensurePartitionsAhead(kt.database.db, kt.clock.now(), 2);
  kt.logger.info('maintenance: partitions ensured');
}
