/**
 * The story the Demo org tells on the first look at /admin (pure: times are offsets from "now"):
 * a busy service with a 5xx incident, a mobile app whose traffic spikes today, a key rotated two
 * days ago whose old key is still in use, a partner key revoked five days ago and still being
 * tried, a dormant reporting key, and a test key never used.
 */
import type { Environment } from '../keys/key-format.ts';
import { DAY, HISTORY_DAYS, HOUR, type Traffic } from './sample-usage.ts';

const MINUTE = 60_000;

export type DemoKey = {
  name: string;
  environment: Environment;
  scopes: string[];
  createdAt: number;
  /** Rotated at this instant, the old key working on for `overlapSeconds`. */
  rotation?: { at: number; overlapSeconds: number };
  revocation?: { at: number; reason: string };
  /** Traffic of the key (of the old key, when rotated). */
  traffic: Omit<Traffic, 'ips' | 'userAgent'>[];
  /** Traffic of the key issued by the rotation. */
  successorTraffic?: Omit<Traffic, 'ips' | 'userAgent'>[];
  ips: string[];
  userAgent: string;
};

const orders = [
  { method: 'GET', route: '/v1/orders/:id', weight: 55, latencyMs: 18 },
  { method: 'GET', route: '/v1/orders', weight: 20, latencyMs: 42 },
  { method: 'POST', route: '/v1/orders', weight: 15, latencyMs: 65 },
  { method: 'GET', route: '/v1/products/:sku', weight: 10, latencyMs: 12 },
];
const billing = [
  { method: 'POST', route: '/v1/invoices', weight: 45, latencyMs: 85 },
  { method: 'GET', route: '/v1/invoices/:id', weight: 40, latencyMs: 22 },
  { method: 'POST', route: '/v1/payments/:id/capture', weight: 15, latencyMs: 140 },
];
const reports = [{ method: 'GET', route: '/v1/reports/daily', weight: 1, latencyMs: 320 }];
const admin = [
  { method: 'GET', route: '/api/orgs/:orgId/api-keys/usage', weight: 70, latencyMs: 9 },
  { method: 'GET', route: '/api/orgs/:orgId/audit-events', weight: 30, latencyMs: 6 },
];

/** When the org was founded, relative to now (its admin key is that old). */
export const ORG_AGE_MS = 75 * DAY;

/** The org admin key's own use (the org's creation issues it): a person opening the page. */
export type AdminUse = Pick<DemoKey, 'traffic' | 'ips' | 'userAgent'>;

export function demoPlan(now: number): { admin: AdminUse; keys: DemoKey[] } {
  const history = now - HISTORY_DAYS * DAY;
  // The latest sample event is a few minutes old: "last used 3 minutes ago", not "in the future".
  const end = now - 3 * MINUTE;
  const steady = { from: history, to: end, rate4xx: 0.02, rate5xx: 0.003 };
  const rotatedAt = now - 2 * DAY - 5 * HOUR;
  const revokedAt = now - 5 * DAY - 3 * HOUR;
  const incidentAt = Math.floor(now / DAY) * DAY - 3 * DAY + 14 * HOUR;
  return {
    admin: {
      traffic: [{ ...steady, peakPerHour: 3, endpoints: admin, rate4xx: 0, rate5xx: 0 }],
      ips: ['198.51.100.7'],
      userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0',
    },
    keys: [
      {
        name: 'checkout-service',
        environment: 'live',
        scopes: ['orders:read', 'orders:write'],
        createdAt: now - 58 * DAY,
        traffic: [
          {
            ...steady,
            peakPerHour: 140,
            endpoints: orders,
            // Three days ago, 14:00–17:00 UTC: busy hours, never across midnight.
            incident: { from: incidentAt, to: incidentAt + 3 * HOUR, rate5xx: 0.35 },
          },
        ],
        ips: ['203.0.113.10', '203.0.113.11', '203.0.113.12'],
        userAgent: 'checkout/4.12 (node 24)',
      },
      {
        name: 'mobile-app',
        environment: 'live',
        scopes: ['orders:read'],
        createdAt: now - 45 * DAY,
        traffic: [
          {
            ...steady,
            peakPerHour: 10,
            endpoints: orders.slice(0, 2),
            rate4xx: 0.04,
            // Today's release doubled the polling, twice: a spike (≥ 3× the week's daily mean).
            surge: { from: now - 20 * HOUR, factor: 7 },
          },
        ],
        ips: ['192.0.2.44', '192.0.2.45', '192.0.2.101', '192.0.2.160'],
        userAgent: 'ShopApp/7.3 (iOS 18.1)',
      },
      {
        name: 'billing-sync',
        environment: 'live',
        scopes: ['invoices:write', 'payments:write'],
        createdAt: now - 50 * DAY,
        rotation: { at: rotatedAt, overlapSeconds: 7 * 86_400 },
        // One of two billing workers still runs with the old key after the rotation.
        traffic: [{ ...steady, peakPerHour: 30, endpoints: billing }],
        successorTraffic: [{ ...steady, from: rotatedAt, peakPerHour: 6, endpoints: billing }],
        ips: ['198.51.100.20', '198.51.100.21'],
        userAgent: 'billing-sync/2.0',
      },
      {
        name: 'partner-acme',
        environment: 'live',
        scopes: ['orders:read'],
        createdAt: now - 40 * DAY,
        revocation: { at: revokedAt, reason: 'partner contract ended' },
        traffic: [
          { ...steady, to: revokedAt, peakPerHour: 6, endpoints: orders.slice(0, 1) },
          // Still tried after the revocation: every attempt refused (401), a finding.
          {
            ...steady,
            from: revokedAt + 10 * MINUTE,
            to: now - 25 * MINUTE,
            peakPerHour: 0.6,
            endpoints: orders.slice(0, 1),
            outcome: 'revoked',
            status: 401,
          },
        ],
        ips: ['203.0.113.77'],
        userAgent: 'acme-integration/1.4',
      },
      {
        name: 'legacy-reporting',
        environment: 'live',
        scopes: ['reports:read'],
        createdAt: now - 70 * DAY,
        // Last used 41 days ago: dormant after the default 30 days.
        traffic: [
          {
            from: now - 70 * DAY,
            to: now - 41 * DAY,
            peakPerHour: 2,
            endpoints: reports,
            rate4xx: 0,
            rate5xx: 0.01,
          },
        ],
        ips: ['192.0.2.200'],
        userAgent: 'reporting-cron/0.9',
      },
      {
        name: 'ci-smoke-tests',
        environment: 'test',
        scopes: ['orders:read'],
        createdAt: now - 35 * DAY,
        traffic: [],
        ips: [],
        userAgent: '',
      },
    ],
  };
}
