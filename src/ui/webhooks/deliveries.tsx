/** One endpoint's Deliveries log: event, status, attempts, the last result, and "Resend". */
import { useEffect, useState } from 'preact/hooks';
import type { ApiError, Client, Delivery, Webhook } from '../api.ts';
import { Loading, ProblemMessage, RelativeTime } from '../components.tsx';
import { asApiError, useApi } from '../hooks.ts';

const SETTLED = new Set(['succeeded', 'failed', 'skipped']);
/** While a delivery is on its way, the log reads itself again this often. */
const FOLLOW_MS = 2_000;

/** "200", "HTTP 500", "timeout": the last attempt's answer or why there was none. */
export function lastResult(d: Pick<Delivery, 'attempts'>): string {
  const last = d.attempts.at(-1);
  if (!last) return '—';
  if (last.error) return last.status_code ? `${last.error} (HTTP ${last.status_code})` : last.error;
  return `HTTP ${last.status_code ?? '—'}`;
}

type Props = { client: Client; orgId: string; hook: Webhook; generation: number; now: number };

export function DeliveriesLog({ client, orgId, hook, generation, now }: Props) {
  const [reads, setReads] = useState(0);
  const [error, setError] = useState<ApiError | null>(null);
  const log = useApi(
    (signal) => client.deliveries(orgId, hook.id, signal),
    [client, orgId, hook.id, generation, reads],
  );
  const onItsWay = log.data?.data.some((d) => !SETTLED.has(d.status)) ?? false;
  useEffect(() => {
    if (!onItsWay || log.loading) return;
    const timer = setTimeout(() => setReads((n) => n + 1), FOLLOW_MS);
    return () => clearTimeout(timer);
  }, [onItsWay, log.loading, log.data]);
  const [resending, setResending] = useState(false);
  async function resend(id: string) {
    if (resending) return;
    setResending(true);
    setError(null);
    try {
      await client.resendDelivery(orgId, hook.id, id);
      setReads((n) => n + 1);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setResending(false);
    }
  }
  if (log.error) return <ProblemMessage error={log.error} />;
  if (!log.data) return <Loading label="Loading the deliveries…" />;
  if (log.data.data.length === 0) return <p class="empty">No delivery yet.</p>;
  return (
    <>
      {error && <ProblemMessage error={error} />}
      <table aria-label={`Deliveries to ${hook.url}`}>
        <thead>
          <tr>
            <th scope="col">Event</th>
            <th scope="col">Status</th>
            <th scope="col">Attempts</th>
            <th scope="col">Last result</th>
            <th scope="col">Last attempt</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {log.data.data.map((d) => (
            <tr key={d.id}>
              <td>{d.event_type}</td>
              <td>{d.status}</td>
              <td>{d.attempt_count}</td>
              <td>{lastResult(d)}</td>
              <td>
                <RelativeTime iso={d.last_attempt_at} now={now} />
              </td>
              <td>
                {SETTLED.has(d.status) && (
                  <button type="button" class="small" onClick={() => void resend(d.id)}>
                    Resend <span class="sr-only">{d.event_type}</span>
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
