/** The export-link operations of the OpenAPI document (SPEC §7, docs/adr/0013-export-links.md). */
import { z } from 'zod';
import type { Op } from './openapi.ts';
import { Uuid } from './schemas.ts';
import * as e from './export.schemas.ts';

export const EXPORT_OPERATIONS: Op[] = [
  {
    method: 'post',
    path: '/api/orgs/{orgId}/exports',
    operationId: 'createExport',
    summary:
      'A link that downloads the events of a range once, within a minute, as CSV or NDJSON, without credentials',
    scope: 'events:read',
    params: z.object({ orgId: Uuid }),
    body: e.CreateExportBody,
    ok: { status: 201, schema: e.CreatedExportJson, description: 'The export and its link' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/orgs/{orgId}/exports/{exportId}',
    operationId: 'getExport',
    summary: 'How far an export got: its state, rows and bytes sent',
    scope: 'events:read',
    params: e.ExportParams,
    ok: { status: 200, schema: e.ExportJson, description: 'The export' },
    errors: [400, 401, 403, 404, 429, 503],
  },
  {
    method: 'get',
    path: '/api/exports/{token}',
    operationId: 'downloadExport',
    summary:
      'Downloads an export once (the link is its credential); refused when the key that made it is no longer valid, lacks events:read, or does not allow this address',
    public: true,
    files: true,
    params: e.ExportTokenParams,
    ok: {
      status: 200,
      schema: z.string(),
      description: 'The file (text/csv or application/x-ndjson), as an attachment',
    },
    errors: [400, 401, 403, 404, 429, 503],
  },
];
