/** The key page's two lists: its top endpoints in the window and its latest raw events. */
import type { KeyUsage } from '../api.ts';
import { RelativeTime } from '../components.tsx';
import { formatNumber, NEVER } from '../format.ts';
import { formatLatency, formatRate } from './window.ts';

export function EndpointsTable(props: { endpoints: KeyUsage['top_endpoints']; phrase: string }) {
  if (props.endpoints.length === 0) return <p class="empty">No endpoints in {props.phrase}.</p>;
  return (
    <div class="table-scroll" role="region" aria-label="Top endpoints" tabIndex={0}>
      <table class="keys data">
        <caption class="sr-only">Top endpoints, {props.phrase}</caption>
        <HeaderRow
          columns={[
            'Endpoint',
            ['Requests', 'num'],
            ['Errors', 'num'],
            ['Error rate', 'num'],
            ['Avg latency', 'num'],
          ]}
        />
        <tbody>
          {props.endpoints.map((e) => (
            <tr key={`${e.method} ${e.route}`}>
              <th scope="row">
                <code>
                  {e.method} {e.route}
                </code>
              </th>
              <td class="num">{formatNumber(e.requests)}</td>
              <td class="num">{formatNumber(e.errors)}</td>
              <td class="num">{formatRate(e.requests > 0 ? e.errors / e.requests : null)}</td>
              <td class="num">{formatLatency(e.avg_latency_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** A table's column headers; `num` ones align right, over their figures. */
export function HeaderRow({ columns }: { columns: (string | [string, 'num'])[] }) {
  return (
    <thead>
      <tr>
        {columns.map((c) =>
          typeof c === 'string' ? (
            <th key={c} scope="col">
              {c}
            </th>
          ) : (
            <th key={c[0]} scope="col" class="num">
              {c[0]}
            </th>
          ),
        )}
      </tr>
    </thead>
  );
}

type Outcome = KeyUsage['recent_events'][number]['outcome'];

/** Each outcome's label and badge: a key refused for itself, or a working key by its limits. */
const OUTCOMES: Record<Outcome, [string, 'denied' | 'limited' | null]> = {
  success: ['OK', null],
  revoked: ['Denied: revoked', 'denied'],
  expired: ['Denied: expired', 'denied'],
  insufficient_scope: ['Denied: scope', 'denied'],
  rate_limited: ['Limited: rate', 'limited'],
  quota_exceeded: ['Limited: quota', 'limited'],
  ip_denied: ['Limited: IP', 'limited'],
};

function OutcomeLabel({ outcome }: { outcome: Outcome }) {
  // An outcome newer than this page is shown as the API names it, as a refusal.
  const [label, kind] = OUTCOMES[outcome] ?? [outcome, 'denied'];
  return kind ? <span class={`badge badge-${kind}`}>{label}</span> : <>{label}</>;
}

export function EventsTable({ events, now }: { events: KeyUsage['recent_events']; now: number }) {
  if (events.length === 0) return <p class="empty">No events yet.</p>;
  return (
    <div class="table-scroll" role="region" aria-label="Recent events" tabIndex={0}>
      <table class="keys data">
        <caption class="sr-only">
          The {events.length} latest events of this key, newest first
        </caption>
        <HeaderRow
          columns={['Time', 'Request', ['Status', 'num'], ['Latency', 'num'], 'IP', 'Outcome']}
        />
        <tbody>
          {events.map((e) => (
            <tr key={e.event_id} class={e.outcome === 'success' ? undefined : 'denied'}>
              <td>
                <RelativeTime iso={e.occurred_at} now={now} />
              </td>
              <td>
                <code>
                  {e.method} {e.route}
                </code>
              </td>
              <td class="num">{e.status}</td>
              <td class="num">{formatLatency(e.latency_ms)}</td>
              <td>{e.ip ?? NEVER}</td>
              <td>
                <OutcomeLabel outcome={e.outcome} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
