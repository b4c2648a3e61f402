/**
 * One key's page: its fields and status, Rotate and Revoke, findings (an old key still in use
 * after a rotation, a revoked key still being tried), and its usage over a chosen window: totals,
 * refusals (denied, limited), error rate, latency percentiles, the trend (chart and table), top
 * endpoints, recent events.
 */
import './key.css';
import '../keys/keys.css';
import '../keys/dialogs.css';
import type { ComponentChildren } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import type { ApiKey, KeyUsage } from '../api.ts';
import type { Session } from '../app.tsx';
import {
  DateOnly,
  Loading,
  PageHeading,
  ProblemMessage,
  RelativeTime,
  StatusBadge,
} from '../components.tsx';
import { useOpenDialog } from '../dialog.tsx';
import { formatNumber, NEVER, shortAge } from '../format.ts';
import { useApi, useNow, useTitle } from '../hooks.ts';
import { RevokeDialog, RotateDialog } from '../keys/change-dialogs.tsx';
import { keysHref } from '../route.ts';
import { findingsOf } from './findings.ts';
import { Findings } from './findings.tsx';
import { EndpointsTable, EventsTable } from './tables.tsx';
import { limitFields } from './limits-summary.tsx';
import { LimitsDialog } from '../limits/limits-dialog.tsx';
import { TrendChart } from './trend-chart.tsx';
import {
  DEFAULT_WINDOW,
  formatLatency,
  formatRate,
  windowQuery,
  WINDOWS,
  windowSpec,
  type WindowId,
} from './window.ts';

const TICK_MS = 15_000;

export function KeyPage({ session, keyId }: { session: Session; keyId: string }) {
  const { client, self } = session;
  const orgId = self.org_id;
  const [windowId, setWindowId] = useState<WindowId>(DEFAULT_WINDOW);
  const [dialog, setDialog, closed] = useOpenDialog<{ kind: DialogKind }>();
  // Bumped by Refresh and by a closed dialog: everything on the page is read again.
  const [generation, setGeneration] = useState(0);
  const key = useApi(
    (signal) => client.key(orgId, keyId, signal),
    [client, orgId, keyId, generation],
  );
  // The window is fixed when chosen (or refreshed), so the figures on screen stay one query's.
  const query = useMemo(() => windowQuery(windowId, Date.now()), [windowId, generation]);
  // The answer keeps the window it was asked for: while the next window loads, the figures on
  // screen stay labelled with their own window, not the one just picked.
  const usage = useApi(
    async (signal) => ({
      windowId,
      usage: await client.keyUsage(orgId, keyId, query, signal),
    }),
    [client, orgId, keyId, query],
  );
  const now = useNow(TICK_MS);
  useTitle(key.data?.name ?? 'API key');
  const close = (which: { kind: DialogKind }) => {
    closed(which);
    setGeneration((g) => g + 1);
  };
  const k = key.data;

  return (
    <>
      <p class="back">
        <a href={keysHref}>← Back to API keys</a>
      </p>
      {key.error && (
        <>
          <PageHeading>API key</PageHeading>
          <ProblemMessage error={key.error} />
        </>
      )}
      {!k && !key.error && <Loading label="Loading the key…" />}
      {k && (
        <>
          <div class="page-head">
            <PageHeading>{k.name}</PageHeading>
            {k.status === 'active' && (
              <div class="actions">
                {/* A key cannot change its own limits (the API refuses): not offered. */}
                {k.id !== self.key_id && (
                  <button type="button" onClick={() => setDialog({ kind: 'limits' })}>
                    Edit limits
                  </button>
                )}
                <button type="button" onClick={() => setDialog({ kind: 'rotate' })}>
                  Rotate
                </button>
                <button type="button" class="danger" onClick={() => setDialog({ kind: 'revoke' })}>
                  Revoke
                </button>
              </div>
            )}
          </div>
          {dialog && (
            <KeyDialog
              kind={dialog.kind}
              session={session}
              apiKey={k}
              onClose={() => close(dialog)}
            />
          )}
          <KeyFields apiKey={k} now={now} />
        </>
      )}
      {usage.data && <Findings findings={findingsOf(usage.data.usage, now)} now={now} />}
      <section class="usage" aria-labelledby="usage-title">
        <div class="usage-head">
          <h2 id="usage-title">Usage</h2>
          <WindowPicker value={windowId} onChange={setWindowId} />
          <p class="muted as-of">
            {usage.data &&
              `Data as of ${shortAge(now - Date.parse(usage.data.usage.data_as_of))} ago. `}
            <button type="button" class="link" onClick={() => setGeneration((g) => g + 1)}>
              Refresh
            </button>
          </p>
        </div>
        {usage.error && <ProblemMessage error={usage.error} />}
        {!usage.data && !usage.error && <Loading label="Loading usage…" />}
        {usage.data && (
          <UsageBody
            usage={usage.data.usage}
            windowId={usage.data.windowId}
            busy={usage.loading}
            now={now}
          />
        )}
      </section>
    </>
  );
}

type DialogKind = 'rotate' | 'revoke' | 'limits';

function KeyDialog(props: {
  kind: DialogKind;
  session: Session;
  apiKey: ApiKey;
  onClose: () => void;
}) {
  const { client, self } = props.session;
  if (props.kind === 'limits') {
    return (
      <LimitsDialog
        client={client}
        orgId={self.org_id}
        apiKey={props.apiKey}
        onClose={props.onClose}
      />
    );
  }
  const row = { key_id: props.apiKey.id, name: props.apiKey.name, prefix: props.apiKey.prefix };
  const common = { client, orgId: self.org_id, row, onClose: props.onClose };
  return props.kind === 'rotate' ? <RotateDialog {...common} /> : <RevokeDialog {...common} />;
}

function Fields({ fields }: { fields: [string, ComponentChildren][] }) {
  return (
    <dl class="fields">
      {fields.map(([label, value]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function KeyFields({ apiKey: k, now }: { apiKey: ApiKey; now: number }) {
  return (
    <Fields
      fields={[
        ['Status', <StatusBadge status={k.status} />],
        ['Prefix', <code>{k.prefix}</code>],
        ['Environment', k.environment],
        ['Scopes', k.scopes.length > 0 ? k.scopes.join(', ') : 'none'],
        ['Created', <DateOnly iso={k.created_at} />],
        ['Expires', k.expires_at ? <DateOnly iso={k.expires_at} /> : 'never'],
        ['Last used', <RelativeTime iso={k.last_used_at} now={now} />],
        ['Requests', formatNumber(k.request_count)],
        ['Last IP', k.last_used_ip ?? NEVER],
        ...limitFields(k),
      ]}
    />
  );
}

function WindowPicker({ value, onChange }: { value: WindowId; onChange: (id: WindowId) => void }) {
  return (
    <fieldset class="window-picker">
      <legend class="sr-only">Window</legend>
      {WINDOWS.map((w) => (
        <label key={w.id} class={w.id === value ? 'segment selected' : 'segment'}>
          <input
            type="radio"
            name="window"
            value={w.id}
            checked={w.id === value}
            onChange={() => onChange(w.id)}
          />
          {w.label}
        </label>
      ))}
    </fieldset>
  );
}

function UsageBody(props: { usage: KeyUsage; windowId: WindowId; busy: boolean; now: number }) {
  const { usage, busy, now } = props;
  const spec = windowSpec(props.windowId);
  const w = usage.window;
  const unit = spec.granularity === 'hour' ? 'hour' : 'day';
  // Refusals are not requests: a key that was only refused still has a trend to show.
  const quiet = w.requests === 0 && w.denied === 0 && w.limited === 0;
  return (
    <div aria-busy={busy}>
      <Fields
        fields={[
          [`Requests, ${spec.label}`, formatNumber(w.requests)],
          ['Denied', formatNumber(w.denied)],
          ['Limited', formatNumber(w.limited)],
          ['Error rate', formatRate(w.error_rate)],
          ['p50 latency', formatLatency(w.p50_latency_ms)],
          ['p95 latency', formatLatency(w.p95_latency_ms)],
          ['Today (UTC)', formatNumber(usage.today.requests)],
          ['This month (UTC)', formatNumber(usage.this_month.requests)],
        ]}
      />
      <h3>Trend</h3>
      {quiet ? (
        <p class="empty">No requests in {spec.phrase}.</p>
      ) : (
        <TrendChart
          series={usage.series}
          granularity={spec.granularity}
          caption={`Requests, errors and refusals per ${unit}, ${spec.phrase}`}
        />
      )}
      <h3>Top endpoints</h3>
      <EndpointsTable endpoints={usage.top_endpoints} phrase={spec.phrase} />
      <h3>Recent events</h3>
      <EventsTable events={usage.recent_events} now={now} />
    </div>
  );
}
