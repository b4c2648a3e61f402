/**
 * The Audit page: the org's audit trail (GET …/audit-events) newest first, as the API returns
 * it, paged by cursor like the keys table. Details are plain `key: value` text, never HTML.
 */
import '../keys/keys.css';
import { useEffect, useState } from 'preact/hooks';
import type { AuditEvent } from '../api.ts';
import type { Session } from '../app.tsx';
import { Loading, PageHeading, Pager, ProblemMessage, RelativeTime } from '../components.tsx';
import { useApi, useNow, useTitle } from '../hooks.ts';
import type { PagedView } from '../keys/usage-query.ts';
import type { Scopes } from '../keys/use-scopes.ts';
import { keyHref } from '../route.ts';

const TICK_MS = 15_000;

type AuditView = PagedView<{ cursor: string | null }>;
const FIRST_PAGE: AuditView = { query: { cursor: null }, previous: [] };

/** `reason: rotated, overlap_seconds: 3600`: values that are not strings as JSON. */
export function detailsText(details: Record<string, unknown>): string {
  return Object.entries(details)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}

/**
 * A key named in the trail: its name and prefix, linked to its page, the id on hover; the bare
 * id while the names load, or when this key may not list keys (no keys:read).
 */
function KeyName({ id, keys }: { id: string; keys: Scopes }) {
  const key = keys.key(id);
  return (
    <a href={keyHref(id)} title={`API key ${id}`}>
      {key ? (
        <>
          {key.name} <code class="muted">{key.prefix}…</code>
        </>
      ) : (
        <code>{id}</code>
      )}
    </a>
  );
}

function Actor({ actor, keys }: { actor: AuditEvent['actor']; keys: Scopes }) {
  if (!actor.key_id) return <>{actor.type}</>;
  return <KeyName id={actor.key_id} keys={keys} />;
}

function Target({ target, keys }: { target: AuditEvent['target']; keys: Scopes }) {
  if (target.type === 'api_key' && target.id) return <KeyName id={target.id} keys={keys} />;
  return <>{target.id ? `${target.type} ${target.id}` : target.type}</>;
}

export function AuditPage({ session, keys }: { session: Session; keys: Scopes }) {
  const { client, self } = session;
  const [view, setView] = useState<AuditView>(FIRST_PAGE);
  const audit = useApi(
    (signal) => client.auditEvents(self.org_id, view.query.cursor, signal),
    [client, self.org_id, view.query.cursor],
  );
  const now = useNow(TICK_MS);
  useTitle('Audit');
  const data = audit.data;
  const { want } = keys;
  useEffect(() => {
    if (!data) return;
    const ids = data.data.flatMap((e) => [
      e.actor.key_id,
      e.target.type === 'api_key' ? e.target.id : null,
    ]);
    want(ids.filter((id): id is string => typeof id === 'string'));
  }, [data, want]);
  return (
    <>
      <PageHeading>Audit</PageHeading>
      {audit.error && <ProblemMessage error={audit.error} />}
      {audit.loading && !data && <Loading label="Loading audit events…" />}
      {data && data.data.length === 0 && <p class="empty">No audit events yet.</p>}
      {data && data.data.length > 0 && (
        // Focusable, so keyboard users can scroll it sideways.
        <div class="table-scroll" role="region" aria-label="Table of audit events" tabIndex={0}>
          <table class="keys" aria-busy={audit.loading}>
            <caption class="sr-only">Audit events, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {data.data.map((e) => (
                <tr key={e.id}>
                  <td>
                    <RelativeTime iso={e.occurred_at} now={now} />
                  </td>
                  <td>
                    <Actor actor={e.actor} keys={keys} />
                  </td>
                  <td>
                    <code>{e.action}</code>
                  </td>
                  <td>
                    <Target target={e.target} keys={keys} />
                  </td>
                  <td class="details">{detailsText(e.details)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {data && <Pager view={view} setView={setView} nextCursor={data.next_cursor} />}
    </>
  );
}
