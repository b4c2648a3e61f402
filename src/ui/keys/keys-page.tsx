/** The API Keys page (the default): summary, filters, the table and its pages. */
import './keys.css';
import './dialogs.css';
import { useEffect, useState } from 'preact/hooks';
import type { UsageRow } from '../api.ts';
import type { Session } from '../app.tsx';
import { PageHeading, Pager, ProblemMessage } from '../components.tsx';
import { useOpenDialog } from '../dialog.tsx';
import { formatNumber } from '../format.ts';
import { useApi, useNow, useTitle } from '../hooks.ts';
import { RevokeDialog, RotateDialog } from './change-dialogs.tsx';
import { BulkRevokeDialog } from './bulk-revoke.tsx';
import { CreateDialog } from './create-dialog.tsx';
import { Filters } from './filters.tsx';
import { KeysTable } from './keys-table.tsx';
import { Summary } from './summary.tsx';
import { OrgGlance } from './org-glance.tsx';
import { OrgFindingsPanel } from './org-findings.tsx';
import type { Scopes } from './use-scopes.ts';
import { refine, sortBy, type KeysView, type UsageQuery } from './usage-query.ts';

// Relative times move in minutes at the finest ("just now" → "1 minute ago"): 15 s is enough.
const TICK_MS = 15_000;

type Props = {
  session: Session;
  /** Held by the signed-in app, so a visit to a key's page comes back to the same view. */
  view: KeysView;
  setView: (update: (view: KeysView) => KeysView) => void;
  scopes: Scopes;
};

/** The dialog open on the page, if any: one at a time (they are modal). */
export type OpenDialog =
  | { kind: 'create' }
  | { kind: 'rotate'; row: UsageRow }
  | { kind: 'revoke'; row: UsageRow }
  | { kind: 'bulk-revoke'; rows: UsageRow[] };

export function KeysPage({ session, view, setView, scopes }: Props) {
  const { client, self } = session;
  const [dialog, setDialog, closed] = useOpenDialog<OpenDialog>();
  // Bumped when a dialog closes: the table reads again and shows what the dialog changed.
  const [generation, setGeneration] = useState(0);
  const usage = useApi(
    (signal) => client.orgUsage(self.org_id, view.query, signal),
    [client, self.org_id, view.query, generation],
  );
  // Dormant keys ticked for "Revoke selected", by id; another view of the table starts afresh.
  const [selected, setSelected] = useState<Map<string, UsageRow>>(new Map());
  useEffect(() => setSelected(new Map()), [view.query]);
  // A ticked key that a reload shows no longer dormant (revoked, used since) drops out.
  useEffect(() => {
    const stale = (usage.data?.data ?? []).filter((r) => !r.dormant && selected.has(r.key_id));
    if (stale.length > 0)
      setSelected((s) => new Map([...s].filter(([id]) => !stale.some((r) => r.key_id === id))));
  }, [usage.data]);
  const toggle = (row: UsageRow) =>
    setSelected((s) => {
      const next = new Map(s);
      if (!next.delete(row.key_id)) next.set(row.key_id, row);
      return next;
    });
  const close = (which: OpenDialog) => {
    if (which.kind === 'bulk-revoke') setSelected(new Map());
    closed(which);
    setGeneration((g) => g + 1);
  };
  const dialogProps = { client, orgId: self.org_id, onClose: () => dialog && close(dialog) };
  const rows = usage.data?.data;
  const { want } = scopes;
  useEffect(() => {
    if (rows) want(rows.map((r) => r.key_id));
  }, [rows, want]);
  const now = useNow(TICK_MS);
  useTitle('API keys');
  const change = (c: Partial<UsageQuery>) => setView((v) => refine(v, c));
  const data = usage.data;

  return (
    <>
      <div class="page-head">
        <PageHeading>API keys</PageHeading>
        <button type="button" class="primary" onClick={() => setDialog({ kind: 'create' })}>
          Create key
        </button>
      </div>
      {dialog?.kind === 'create' && <CreateDialog {...dialogProps} />}
      {dialog?.kind === 'rotate' && <RotateDialog {...dialogProps} row={dialog.row} />}
      {dialog?.kind === 'revoke' && <RevokeDialog {...dialogProps} row={dialog.row} />}
      {dialog?.kind === 'bulk-revoke' && <BulkRevokeDialog {...dialogProps} rows={dialog.rows} />}
      {data && <Summary usage={data} />}
      <OrgFindingsPanel client={client} orgId={self.org_id} generation={generation} now={now} />
      <Filters
        query={view.query}
        dormantAfterDays={data?.dormant_after_days ?? null}
        onChange={change}
      />
      {scopes.error && (
        <p class="message message-info">Scopes are not shown: {scopes.error.detail}.</p>
      )}
      {usage.error && <ProblemMessage error={usage.error} />}
      {selected.size > 0 && (
        <p class="bulk-bar">
          <span>
            {selected.size} dormant {selected.size === 1 ? 'key' : 'keys'} selected
          </span>
          <button
            type="button"
            class="danger"
            onClick={() => setDialog({ kind: 'bulk-revoke', rows: [...selected.values()] })}
          >
            Revoke selected
          </button>
        </p>
      )}
      <StatusLine
        loading={usage.loading}
        shown={data?.data.length ?? null}
        page={view.previous.length + 1}
      />
      {data && (
        <>
          <KeysTable
            rows={data.data}
            query={view.query}
            scopes={scopes}
            now={now}
            busy={usage.loading}
            onAction={setDialog}
            selected={selected}
            onToggle={toggle}
            onSort={(sort) => setView((v) => refine(v, sortBy(v.query, sort)))}
          />
          <Pager view={view} setView={setView} nextCursor={data.next_cursor} />
        </>
      )}
      <OrgGlance client={client} orgId={self.org_id} generation={generation} />
    </>
  );
}

/** One polite live region, always present, so every load and its result is announced. */
function StatusLine(props: { loading: boolean; shown: number | null; page: number }) {
  let text = '';
  if (props.loading) text = props.shown === null ? 'Loading keys…' : 'Updating…';
  else if (props.shown !== null)
    text = `${formatNumber(props.shown)} ${props.shown === 1 ? 'key' : 'keys'} on page ${props.page}`;
  return (
    <p class="status-line" role="status">
      {text}
    </p>
  );
}
