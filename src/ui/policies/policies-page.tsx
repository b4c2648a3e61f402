/**
 * The Policies page (`#/policies`): the org's dormant-key policy (SPEC §10) and its default
 * rate limits, which apply to every key without rate limits of its own (SPEC §11).
 */
import './policies.css';
import { useEffect, useState } from 'preact/hooks';
import type { ApiError, Client } from '../api.ts';
import type { Session } from '../app.tsx';
import { Loading, PageHeading, ProblemMessage } from '../components.tsx';
import { asApiError, useApi, useTitle } from '../hooks.ts';
import { RateLimitsEditor } from '../limits/rate-limits-editor.tsx';
import { parseRows, rowsOf, type RateRow } from '../limits/rate-rows.ts';
import { DormantSection } from './dormant-section.tsx';

export function PoliciesPage({ session }: { session: Session }) {
  const { client, self } = session;
  useTitle('Policies');
  return (
    <>
      <PageHeading>Policies</PageHeading>
      <section aria-labelledby="dormant-heading">
        <h2 id="dormant-heading">Dormant keys</h2>
        <p class="muted">
          Once a day, keys unused for the chosen number of days (never used: since their creation)
          are notified about or revoked. The org&apos;s last active org:admin key is never revoked.
        </p>
        <DormantSection client={client} orgId={self.org_id} />
      </section>
      <section aria-labelledby="rate-heading">
        <h2 id="rate-heading">Default rate limits</h2>
        <p class="muted">
          Applied to every key without rate limits of its own, counted per key. A key&apos;s own
          limits replace them.
        </p>
        <RateDefaults client={client} orgId={self.org_id} />
      </section>
    </>
  );
}

function RateDefaults({ client, orgId }: { client: Client; orgId: string }) {
  const loaded = useApi((signal) => client.rateDefaults(orgId, signal), [client, orgId]);
  const [rows, setRows] = useState<RateRow[] | null>(null);
  const [invalid, setInvalid] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (loaded.data) setRows(rowsOf(loaded.data));
  }, [loaded.data]);
  if (loaded.error) return <ProblemMessage error={loaded.error} />;
  if (!rows) return <Loading label="Loading the default rate limits…" />;

  async function save(event: Event) {
    event.preventDefault();
    if (busy || !rows) return;
    const parsed = parseRows(rows);
    if (!parsed.ok) return setInvalid(parsed.message);
    setInvalid(null);
    setError(null);
    setBusy(true);
    try {
      setRows(rowsOf(await client.saveRateDefaults(orgId, parsed.value)));
      setStatus('Default rate limits saved.');
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="policy-form" onSubmit={(e) => void save(e)}>
      <RateLimitsEditor
        id="default"
        legend="Rate limits"
        empty="None: keys without their own limits are not limited."
        rows={rows}
        onChange={(next) => {
          setRows(next);
          setStatus('');
        }}
      />
      {invalid && (
        <p class="field-error" role="alert">
          {invalid}
        </p>
      )}
      <div class="form-actions">
        <button type="submit" class="primary" aria-disabled={busy}>
          Save default limits
        </button>
        <span role="status">{status}</span>
      </div>
      {error && <ProblemMessage error={error} />}
    </form>
  );
}
