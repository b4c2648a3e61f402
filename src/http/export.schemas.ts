/** Export links (SPEC §7, docs/adr/0013-export-links.md): what a key asks for and is told. */
import { z } from 'zod';
import { EventsQuery, Timestamp, Uuid } from './schemas.ts';

/**
 * The export of a range, as GET …/usage-events takes it (the same filters), as a file. `to`
 * left out is the moment the download starts, so nothing of the last minute is left out.
 */
export const CreateExportBody = EventsQuery.omit({ limit: true, cursor: true, format: true })
  .extend({ format: z.enum(['csv', 'ndjson']).default('csv') })
  .meta({ id: 'CreateExportRequest' });

export const ExportParams = z.object({ orgId: Uuid, exportId: Uuid });
/** 32 random bytes, base64url. */
export const ExportTokenParams = z.object({ token: z.string().regex(/^[\w-]{43}$/) });

export const ExportJson = z
  .object({
    id: Uuid,
    state: z.enum(['ready', 'streaming', 'done', 'failed', 'expired']).meta({
      description:
        'ready: not downloaded yet; streaming: being downloaded; done: sent whole; failed: refused or cut (see detail); expired: never downloaded in time',
    }),
    rows: z.number().int().meta({ description: 'Events written so far (updated every second).' }),
    bytes: z.number().int(),
    created_at: Timestamp,
    expires_at: Timestamp.meta({ description: 'The link works once, until then.' }),
    started_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
    detail: z.string().nullable(),
  })
  .meta({ id: 'Export' });

export const CreatedExportJson = ExportJson.extend({
  url: z.string().meta({
    description:
      'Downloads the export once, without credentials (open it as a plain download); the key that made it must still be valid then',
  }),
}).meta({ id: 'CreatedExport' });
