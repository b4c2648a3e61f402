import { Router } from 'express';
import { z } from 'zod';
import type { Keytrail } from '../../keytrail.ts';
import type { ApiKey } from '../../keys/keys.types.ts';
import { AppError } from '../../platform/errors.ts';
import { isUuid } from '../../platform/ids.ts';
import { CursorTime, decodeCursor, encodeCursor } from '../cursor.ts';
import { storable } from '../safe-input.ts';
import { apiKeyJson, eventJson } from '../presenters.ts';
import { KeyUsageQuery, OrgTrendQuery, OrgUsageQuery } from '../schemas.ts';
import { parseInput } from '../validate.ts';
import { readShare } from '../middleware/read-share.ts';

const DAY_MS = 86_400_000;
const sortOrder = z.enum(['asc', 'desc']);
// [sort, order, the last row's sort value, its key id]: the value has its sort column's type, so
// a forged cursor is refused here rather than failing on the query's cast.
const usageCursor = z.union([
  z.tuple([z.literal('request_count'), sortOrder, z.number().int().min(0), z.uuid()]),
  z.tuple([z.literal('name'), sortOrder, z.string().max(200).refine(storable), z.uuid()]),
  z.tuple([z.literal('created_at'), sortOrder, CursorTime, z.uuid()]),
  z.tuple([z.literal('last_used_at'), sortOrder, CursorTime.nullable(), z.uuid()]),
]);
const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The key a rotation replaced, with its use since (the "old key still in use" finding). */
async function rotationJson(
  kt: Keytrail,
  key: ApiKey,
  chain: { previous: ApiKey | null; next: ApiKey | null },
) {
  const { previous, next } = chain;
  return {
    previous: previous && {
      key_id: previous.id,
      name: previous.name,
      prefix: previous.prefix,
      status: previous.status,
      rotated_at: key.createdAt.toISOString(),
      expires_at: iso(previous.expiresAt),
      revoked_at: iso(previous.revokedAt),
      requests_since_rotation: await kt.analytics.requestsSince(
        previous.orgId,
        previous.id,
        key.createdAt,
      ),
      last_used_at: iso(previous.lastUsedAt),
      last_used_ip: previous.lastUsedIp,
    },
    replaced_by: next && {
      key_id: next.id,
      name: next.name,
      prefix: next.prefix,
      rotated_at: next.createdAt.toISOString(),
    },
  };
}

export function analyticsRoutes(kt: Keytrail): Router {
  const router = Router();
  const canRead = kt.requireKey({ orgParam: 'orgId', scopes: ['usage:read'] });
  const share = readShare(kt);

  // The org at a glance: daily totals and busiest keys, from the rollups (an expensive read).
  router.get('/api/orgs/:orgId/usage/daily', canRead, share, async (req, res) => {
    const { days } = parseInput(OrgTrendQuery, req.query, 'query');
    const [trend, asOf] = await Promise.all([
      kt.orgTrend(req.params.orgId as string, days),
      kt.analytics.dataAsOf(),
    ]);
    res.json({
      data_as_of: asOf.toISOString(),
      from: trend.from.toISOString(),
      to: trend.to.toISOString(),
      series: trend.series.map((s) => ({ ...s, start: s.start.toISOString() })),
      busiest: trend.busiest,
    });
  });

  // What an org admin should look at, each kind the 20 most recent.
  router.get('/api/orgs/:orgId/findings', canRead, share, async (req, res) => {
    const [rows, asOf] = await Promise.all([
      kt.findings(req.params.orgId as string),
      kt.analytics.dataAsOf(),
    ]);
    res.json({
      data_as_of: asOf.toISOString(),
      data: rows.map((r) => ({
        kind: r.kind,
        severity: r.kind === 'revoked_key_used' || r.kind === 'old_key_in_use' ? 'warning' : 'info',
        key: { id: r.key_id, name: r.name, prefix: r.prefix },
        at: r.at.toISOString(),
        count: r.count,
        replaced_by: r.other_id,
        daily_mean: r.baseline,
      })),
    });
  });

  router.get('/api/orgs/:orgId/api-keys/usage', canRead, share, async (req, res) => {
    const query = parseInput(OrgUsageQuery, req.query, 'query');
    const order = query.order ?? (query.sort === 'name' ? 'asc' : 'desc');
    const cursor = query.cursor ? decodeCursor(query.cursor, usageCursor) : undefined;
    if (cursor && (cursor[0] !== query.sort || cursor[1] !== order)) {
      throw new AppError('validation_failed', {
        detail: 'the cursor belongs to another sort or order',
      });
    }
    const dormantDays = query.dormant_days ?? kt.config.dormantDays;
    const result = await kt.analytics.orgUsage(req.params.orgId as string, dormantDays, {
      sort: query.sort,
      order,
      status: query.status,
      dormant: query.dormant,
      limit: query.limit,
      after: cursor && { value: cursor[2], keyId: cursor[3] },
    });
    const { summary } = result;
    const last = result.rows.at(-1);
    const sortValue = (row: NonNullable<typeof last>) => {
      const v = row[query.sort];
      return v instanceof Date ? v.toISOString() : (v ?? null);
    };
    res.json({
      data_as_of: result.dataAsOf.toISOString(),
      dormant_after_days: dormantDays,
      summary: {
        ...summary,
        total_requests: Number(summary.total_requests),
        average_requests_per_key:
          summary.total_keys > 0
            ? Math.round((Number(summary.total_requests) / summary.total_keys) * 100) / 100
            : 0,
      },
      data: result.rows.map((r) => ({
        ...r,
        created_at: r.created_at.toISOString(),
        last_used_at: iso(r.last_used_at),
        last_denied_at: iso(r.last_denied_at),
        last_limited_at: iso(r.last_limited_at),
      })),
      next_cursor:
        result.hasMore && last
          ? encodeCursor([query.sort, order, sortValue(last), last.key_id])
          : null,
    });
  });

  router.get('/api/orgs/:orgId/api-keys/:keyId/usage', canRead, share, async (req, res) => {
    const keyId = req.params.keyId as string;
    if (!isUuid(keyId)) throw new AppError('not_found', { detail: 'API key not found' });
    const key = await kt.keys.get(req.params.orgId as string, keyId);
    const query = parseInput(KeyUsageQuery, req.query, 'query');
    const to = query.to ?? kt.clock.now();
    // Default windows: 30 days by day, the last 24 hours by hour (hourly series are capped at 14 days).
    const from =
      query.from ?? new Date(to.getTime() - (query.granularity === 'hour' ? DAY_MS : 30 * DAY_MS));
    const orgId = req.params.orgId as string;
    const [usage, chain] = await Promise.all([
      kt.analytics.keyUsage(key.orgId, key.id, { from, to, granularity: query.granularity }),
      kt.keys.rotationOf(orgId, key),
    ]);
    const rotation = await rotationJson(kt, key, chain);
    res.json({
      data_as_of: usage.dataAsOf.toISOString(),
      key: apiKeyJson(key),
      totals: {
        ...usage.totals,
        first_used_at: iso(usage.totals.first_used_at),
        last_used_at: iso(usage.totals.last_used_at),
        last_denied_at: iso(usage.totals.last_denied_at),
        last_limited_at: iso(usage.totals.last_limited_at),
      },
      window: {
        ...usage.window,
        from: usage.window.from.toISOString(),
        to: usage.window.to.toISOString(),
      },
      today: usage.today,
      this_month: usage.thisMonth,
      series: usage.series.map((s) => ({ ...s, start: s.start.toISOString() })),
      top_endpoints: usage.topEndpoints,
      recent_events: usage.recentEvents.map(eventJson),
      rotation,
    });
  });

  return router;
}
