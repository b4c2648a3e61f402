/** The org's totals above the table (the whole org, whatever the filters) and their freshness. */
import { exactTime, formatNumber, shortAge } from '../format.ts';
import { useNow } from '../hooks.ts';
import type { OrgUsage } from '../api.ts';

export function Summary({ usage }: { usage: OrgUsage }) {
  const s = usage.summary;
  const items: [string, number][] = [
    ['Total keys', s.total_keys],
    ['Active', s.active_keys],
    [`Dormant (${formatNumber(usage.dormant_after_days)}+ days)`, s.dormant_keys],
    ['Never used', s.never_used_keys],
    ['Requests', s.total_requests],
  ];
  return (
    <section class="summary" aria-labelledby="summary-heading">
      <h2 id="summary-heading" class="sr-only">
        Summary of all keys in the org
      </h2>
      <dl>
        {items.map(([label, value]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{formatNumber(value)}</dd>
          </div>
        ))}
      </dl>
      <Freshness dataAsOf={usage.data_as_of} />
    </section>
  );
}

/**
 * "data as of 2 s ago": usage is complete up to data_as_of (now minus the ingest lag). It ticks
 * every second, so figures left on screen visibly age.
 */
function Freshness({ dataAsOf }: { dataAsOf: string }) {
  const now = useNow(1000);
  return (
    <p class="freshness">
      data as of{' '}
      <time dateTime={dataAsOf} title={exactTime(dataAsOf)}>
        {shortAge(now - Date.parse(dataAsOf))} ago
      </time>
    </p>
  );
}
