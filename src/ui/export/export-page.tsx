/**
 * The Export page: the raw events of a range (and optionally one key) as CSV. The page asks the
 * API for a single-use export link (POST …/exports, the key in the Authorization header) and
 * opens it as a plain download: the browser writes the file as it arrives, so a range of
 * millions of rows never sits in the page's memory, and the key never enters a URL. The page
 * follows the export's progress (GET …/exports/:id) until it ends.
 */
import '../keys/keys.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError, Client, Export } from '../api.ts';
import type { Session } from '../app.tsx';
import { PageHeading, ProblemMessage } from '../components.tsx';
import { formatBytes, formatNumber } from '../format.ts';
import { asApiError, useApi, useTitle } from '../hooks.ts';

const DAY_MS = 86_400_000;
const POLL_MS = 500;

/** A datetime-local value ("2026-12-01T23:20") for an instant, in the browser's time zone. */
export function localInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

/** What the status line says of an export. */
export function progressText(e: Pick<Export, 'state' | 'rows' | 'bytes'>): string {
  const rows = `${formatNumber(e.rows)} ${e.rows === 1 ? 'row' : 'rows'}`;
  if (e.state === 'done') return `Downloaded ${rows} (${formatBytes(e.bytes)})`;
  if (e.state === 'streaming') return `Exporting… ${rows} so far (${formatBytes(e.bytes)})`;
  if (e.state === 'ready') return 'Starting the download…';
  return '';
}

/** Opens the link as a plain download (the anchor holds only the single-use link). */
function startDownload(url: string): void {
  const a = document.createElement('a');
  a.href = url;
  a.download = '';
  document.body.append(a);
  a.click();
  a.remove();
}

/** Polls with a growing pause after a failed poll (an outage, a 5xx), up to this. */
const MAX_BACKOFF_MS = 8_000;

/**
 * Follows an export until it ends (done, failed, expired). A failed poll is retried: the
 * download goes on whatever the page's polls meet, so only a 4xx (the export is gone, the key
 * lost its scope) ends the following.
 */
async function follow(
  client: Client,
  orgId: string,
  created: Export,
  onUpdate: (e: Export) => void,
  signal: AbortSignal,
): Promise<void> {
  let current = created;
  let pause = POLL_MS;
  while (current.state === 'ready' || current.state === 'streaming') {
    await new Promise((resolve) => setTimeout(resolve, pause));
    if (signal.aborted) return;
    try {
      current = await client.exportStatus(orgId, created.id, signal);
      pause = POLL_MS;
      onUpdate(current);
    } catch (error) {
      const status = asApiError(error).status;
      // A 429 (the org's share of reads) is worth retrying; another 4xx ends the following.
      if (signal.aborted || (status >= 400 && status < 500 && status !== 429)) throw error;
      pause = Math.min(MAX_BACKOFF_MS, pause * 2);
    }
  }
}

type FieldProps = {
  label: string;
  value: string;
  onChange: (value: string) => void;
  required?: boolean;
  hint?: string;
};

function DateTimeField({ label, value, onChange, required = true, hint }: FieldProps) {
  return (
    <label>
      {label}
      <input
        type="datetime-local"
        required={required}
        value={value}
        aria-describedby={hint ? 'export-to-hint' : undefined}
        onInput={(e) => onChange(e.currentTarget.value)}
      />
      {hint && (
        <span id="export-to-hint" class="muted">
          {hint}
        </span>
      )}
    </label>
  );
}

export function ExportPage({ session }: { session: Session }) {
  const { client, self } = session;
  const [from, setFrom] = useState(() => localInput(Date.now() - DAY_MS));
  const [to, setTo] = useState('');
  const [keyId, setKeyId] = useState('');
  const [current, setCurrent] = useState<Export | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const following = useRef<AbortController | null>(null);
  // From the click until the export is made: a double click makes one export, not two (a ref:
  // the second click comes before the re-render). The button stays focusable (aria-disabled).
  const making = useRef(false);
  const [submitting, setSubmitting] = useState(false);
  const keys = useApi((signal) => client.keys(self.org_id, signal), [client, self.org_id]);
  useTitle('Export');
  useEffect(() => () => following.current?.abort(), []);
  const busy = submitting || current?.state === 'ready' || current?.state === 'streaming';

  async function submit(event: Event) {
    event.preventDefault();
    if (busy || making.current) return;
    making.current = true;
    setSubmitting(true);
    setError(null);
    following.current?.abort();
    const controller = new AbortController();
    following.current = controller;
    try {
      const created = await client.createExport(self.org_id, {
        from: new Date(from).toISOString(),
        // Left empty: up to the moment the download starts.
        ...(to && { to: new Date(to).toISOString() }),
        ...(keyId && { key_id: keyId }),
        format: 'csv',
      });
      setCurrent(created);
      making.current = false;
      setSubmitting(false);
      startDownload(created.url);
      await follow(client, self.org_id, created, setCurrent, controller.signal);
    } catch (failure) {
      if (!controller.signal.aborted) setError(asApiError(failure));
      setCurrent(null);
    } finally {
      making.current = false;
      setSubmitting(false);
    }
  }

  return (
    <>
      <PageHeading>Export</PageHeading>
      <p class="muted">
        Raw usage events of a range as CSV, oldest first. Your browser saves the file as it arrives.
      </p>
      <form class="filters" onSubmit={(e) => void submit(e)}>
        <DateTimeField label="From" value={from} onChange={setFrom} />
        <DateTimeField
          label="To"
          value={to}
          onChange={setTo}
          required={false}
          hint="Empty: up to now"
        />
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
        {current && progressText(current)}
      </p>
      {(current?.state === 'failed' || current?.state === 'expired') && (
        <p class="message message-error" role="alert">
          The export did not complete ({formatNumber(current.rows)} rows written):{' '}
          {current.state === 'expired'
            ? 'the browser did not start the download within a minute'
            : (current.detail ?? 'no reason was recorded')}
          .
        </p>
      )}
      {error && <ProblemMessage error={error} />}
    </>
  );
}
