/** A key's limits on its page: rate limits as sentences, the quota as a bar, allowed IPs. */
import '../limits/limits.css';
import type { ComponentChildren } from 'preact';
import type { ApiKey } from '../api.ts';
import { formatNumber } from '../format.ts';
import { describePolicy } from '../limits/rate-rows.ts';
import { policiesHref } from '../route.ts';

const fmt = (n: number) => formatNumber(n);

export function RateLimitsText({ apiKey }: { apiKey: ApiKey }) {
  if (apiKey.rate_limits.length === 0) {
    return (
      <>
        none of its own (the <a href={policiesHref}>org default</a> applies, if any)
      </>
    );
  }
  return <>{apiKey.rate_limits.map((p) => `${p.name}: ${describePolicy(p, fmt)}`).join('; ')}</>;
}

export function QuotaBar({ quota }: { quota: NonNullable<ApiKey['quota']> }) {
  const refill = quota.refill
    ? `, refilled to ${fmt(quota.refill.amount)} every ${quota.refill.interval} (UTC)`
    : ', never refilled';
  return (
    <span class="quota">
      <meter
        min={0}
        max={quota.limit}
        low={quota.limit * 0.1}
        optimum={quota.limit}
        value={quota.remaining}
        aria-label="Quota remaining"
      />{' '}
      {fmt(quota.remaining)} of {fmt(quota.limit)} left{refill}
    </span>
  );
}

/** The fields of a key's limits, for its page's field list. */
export function limitFields(k: ApiKey): [string, ComponentChildren][] {
  return [
    ['Rate limits', <RateLimitsText apiKey={k} />],
    ['Quota', k.quota ? <QuotaBar quota={k.quota} /> : 'none'],
    ['Allowed IPs', k.allowed_ips.length > 0 ? k.allowed_ips.join(', ') : 'any address'],
  ];
}
