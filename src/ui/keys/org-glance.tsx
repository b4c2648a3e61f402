/**
 * The org at a glance (issue 20): requests, errors and refusals of every key per UTC day over
 * the last 30 days (a chart, and its figures as a table for screen readers), and the busiest
 * keys of those days, each linked to its page. A disclosure, closed at first: the keys table
 * stays the page's one table (and its names the page's only key links) until it is opened, and
 * the trend is read only then.
 */
import { useState } from 'preact/hooks';
import type { Client } from '../api.ts';
import { Loading, ProblemMessage } from '../components.tsx';
import { formatNumber } from '../format.ts';
import { useApi } from '../hooks.ts';
import { TrendChart } from '../key/trend-chart.tsx';
import { keyHref } from '../route.ts';

const DAYS = 30;

type Props = { client: Client; orgId: string; generation: number };

export function OrgGlance(props: Props) {
  const [open, setOpen] = useState(false);
  return (
    <details class="org-glance" onToggle={(e) => setOpen(e.currentTarget.open)}>
      <summary>
        <h2>The org at a glance</h2>
      </summary>
      {open && <Glance {...props} />}
    </details>
  );
}

function Glance({ client, orgId, generation }: Props) {
  const trend = useApi(
    (signal) => client.orgTrend(orgId, DAYS, signal),
    [client, orgId, generation],
  );
  const t = trend.data;
  return (
    <section aria-label="The org at a glance">
      {trend.error && <ProblemMessage error={trend.error} />}
      {!t && !trend.error && <Loading label="Loading the org's trend…" />}
      {t && (
        <>
          <TrendChart
            series={t.series}
            granularity="day"
            latency={false}
            caption={`Requests, errors and refusals of every key per day, last ${DAYS} days (UTC)`}
          />
          <h3>Busiest keys, last {DAYS} days</h3>
          {t.busiest.length === 0 ? (
            <p class="empty">No requests in the last {DAYS} days.</p>
          ) : (
            <ol class="busiest">
              {t.busiest.map((k) => (
                <li key={k.key_id}>
                  <a href={keyHref(k.key_id)}>{k.name}</a> <code>{k.prefix}…</code>
                  {k.revoked && ' (revoked)'}: {formatNumber(k.requests)}{' '}
                  {k.requests === 1 ? 'request' : 'requests'}
                </li>
              ))}
            </ol>
          )}
        </>
      )}
    </section>
  );
}
