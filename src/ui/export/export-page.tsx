/**
 * The Export page: the raw events of a range (and optionally one key) as the API's CSV
 * (GET …/usage-events, Accept: text/csv), downloaded through a temporary object URL. The key
 * stays in the Authorization header: the download link holds only the blob.
 */
import '../keys/keys.css';
import { useState } from 'preact/hooks';
import type { ApiError } from '../api.ts';
import type { Session } from '../app.tsx';
import { PageHeading, ProblemMessage } from '../components.tsx';
import { formatNumber } from '../format.ts';
import { asApiError, useApi, useTitle } from '../hooks.ts';

const DAY_MS = 86_400_000;

/** A datetime-local value ("2026-12-01T23:20") for an instant, in the browser's time zone. */
export function localInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

/** "20261201T2320" (UTC) for the file name. */
const stamp = (iso: string): string => iso.slice(0, 16).replace(/[-:]/g, '');

/** The CSV's data rows: its non-empty lines minus the header. */
export function csvRows(text: string): number {
  const lines = text.split(/\r?\n/).filter((l) => l !== '');
  return Math.max(0, lines.length - 1);
}

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  // After the click has started the download: revoking at once can cancel it in some browsers.
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

type FieldProps = { label: string; value: string; onChange: (value: string) => void };

function DateTimeField({ label, value, onChange }: FieldProps) {
  return (
    <label>
      {label}
      <input
        type="datetime-local"
        required
        value={value}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
    </label>
  );
}

type Result = { kind: 'done'; rows: number } | { kind: 'error'; error: ApiError };

export function ExportPage({ session }: { session: Session }) {
  const { client, self } = session;
  const [from, setFrom] = useState(() => localInput(Date.now() - DAY_MS));
  const [to, setTo] = useState(() => localInput(Date.now()));
  const [keyId, setKeyId] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result | null>(null);
  const keys = useApi((signal) => client.keys(self.org_id, signal), [client, self.org_id]);
  useTitle('Export');

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setResult(null);
    try {
      const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
      const blob = await client.exportCsv(self.org_id, { ...range, keyId: keyId || null });
      const rows = csvRows(await blob.text());
      download(blob, `keytrail-events-${stamp(range.from)}-${stamp(range.to)}.csv`);
      setResult({ kind: 'done', rows });
    } catch (error) {
      setResult({ kind: 'error', error: asApiError(error) });
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <PageHeading>Export</PageHeading>
      <p class="muted">Raw usage events of a range as CSV, oldest first.</p>
      <form class="filters" onSubmit={(e) => void submit(e)}>
        <DateTimeField label="From" value={from} onChange={setFrom} />
        <DateTimeField label="To" value={to} onChange={setTo} />
        <label>
          Key
          <select value={keyId} onChange={(e) => setKeyId(e.currentTarget.value)}>
            <option value="">All keys</option>
            {(keys.data ?? []).map((k) => (
              <option key={k.id} value={k.id}>
                {k.name}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary" aria-disabled={busy}>
          Export CSV
        </button>
      </form>
      {keys.error && (
        <p class="message message-info">Only all keys can be chosen: {keys.error.detail}.</p>
      )}
      <p class="status-line" role="status">
        {busy && 'Exporting…'}
        {result?.kind === 'done' &&
          `Downloaded ${formatNumber(result.rows)} ${result.rows === 1 ? 'row' : 'rows'}`}
      </p>
      {result?.kind === 'error' && <ProblemMessage error={result.error} />}
    </>
  );
}
