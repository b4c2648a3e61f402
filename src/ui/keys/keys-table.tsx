/**
 * The API Keys table: one row per key as the API returned it, in the API's order. Sortable
 * headers are buttons inside `<th aria-sort>`; the API sorts (a page of 50 out of 1,000 keys
 * cannot be sorted in the browser).
 */
import type { UsageRow } from '../api.ts';
import { DateOnly, RelativeTime, StatusBadge } from '../components.tsx';
import { formatNumber, NEVER } from '../format.ts';
import { keyHref } from '../route.ts';
import type { OpenDialog } from './keys-page.tsx';
import type { Scopes } from './use-scopes.ts';
import type { UsageQuery, UsageSort } from './usage-query.ts';

type Props = {
  rows: UsageRow[];
  query: UsageQuery;
  scopes: Scopes;
  now: number;
  busy: boolean;
  onSort: (sort: UsageSort) => void;
  onAction: (dialog: OpenDialog) => void;
  selected: Map<string, UsageRow>;
  onToggle: (row: UsageRow) => void;
};

const COLUMNS = 11;

const SORT_NAMES: Record<UsageSort, string> = {
  last_used_at: 'last used',
  request_count: 'requests',
  name: 'name',
  created_at: 'created',
};

function caption(q: UsageQuery): string {
  const direction = q.order === 'asc' ? 'ascending' : 'descending';
  return `API keys, sorted by ${SORT_NAMES[q.sort]}, ${direction}`;
}

export function KeysTable(props: Props) {
  const { rows, query, scopes, now, busy, onSort, onAction, selected, onToggle } = props;
  const sortable = (label: string, sort: UsageSort) => (
    <SortHeader label={label} sort={sort} query={query} onSort={onSort} />
  );
  return (
    // Focusable, so keyboard users can scroll it sideways. Its name avoids "API key": tests find
    // the sign-in field by that label, and a region named "API keys…" would match it too.
    <div class="table-scroll" role="region" aria-label="Table of keys" tabIndex={0}>
      <table class="keys" aria-busy={busy}>
        <caption class="sr-only">{caption(query)}</caption>
        <thead>
          <tr>
            <th scope="col" class="pick">
              <span class="sr-only">Select</span>
            </th>
            {sortable('Name', 'name')}
            <th scope="col">Prefix</th>
            <th scope="col">Environment</th>
            <th scope="col">Scopes</th>
            {sortable('Created', 'created_at')}
            {sortable('Last used', 'last_used_at')}
            {sortable('Requests', 'request_count')}
            <th scope="col" class="num">
              Limited
            </th>
            <th scope="col">Last IP</th>
            <th scope="col">Status</th>
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={COLUMNS} class="empty">
                No keys match
              </td>
            </tr>
          ) : (
            rows.map((row) => (
              <KeyRow
                key={row.key_id}
                row={row}
                scopes={scopes}
                now={now}
                onAction={onAction}
                selected={selected.has(row.key_id)}
                onToggle={onToggle}
              />
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

type SortHeaderProps = {
  label: string;
  sort: UsageSort;
  query: UsageQuery;
  onSort: (sort: UsageSort) => void;
};

function SortHeader({ label, sort, query, onSort }: SortHeaderProps) {
  const active = query.sort === sort;
  const ascending = query.order === 'asc';
  const ariaSort = active ? (ascending ? 'ascending' : 'descending') : 'none';
  return (
    <th scope="col" aria-sort={ariaSort} class={active ? 'sorted' : undefined}>
      <button type="button" class="sort" onClick={() => onSort(sort)}>
        {label}
        {/* Hidden from the accessible name: the header reads "Last used", aria-sort says how. */}
        <span class="sort-mark" aria-hidden="true">
          {active ? (ascending ? '▲' : '▼') : '↕'}
        </span>
      </button>
    </th>
  );
}

type RowProps = {
  row: UsageRow;
  scopes: Scopes;
  now: number;
  onAction: (dialog: OpenDialog) => void;
  selected: boolean;
  onToggle: (row: UsageRow) => void;
};

function KeyRow({ row, scopes, now, onAction, selected, onToggle }: RowProps) {
  return (
    <tr>
      {/* Dormant keys only: the selection is for "Revoke selected". */}
      <td class="pick">
        {row.dormant && (
          <input
            type="checkbox"
            class="select"
            aria-label={`Select ${row.name} to revoke`}
            checked={selected}
            onChange={() => onToggle(row)}
          />
        )}
      </td>
      <th scope="row" class="name">
        <a href={keyHref(row.key_id)}>{row.name}</a>
      </th>
      <td>
        <code>{row.prefix}</code>
      </td>
      <td>
        <span class={`badge badge-env-${row.environment}`}>{row.environment}</span>
      </td>
      <td class="scopes">
        <ScopeList scopes={scopes.of(row.key_id)} unreadable={scopes.error !== null} />
      </td>
      <td class="time">
        <DateOnly iso={row.created_at} />
      </td>
      <td class="time">
        <RelativeTime iso={row.last_used_at} now={now} />
      </td>
      <td class="num">{formatNumber(row.request_count)}</td>
      {/* Refusals by the key's limits (SPEC §11): not requests, so counted apart. */}
      <td class="num">{formatNumber(row.limited_count)}</td>
      <td class="ip">{row.last_used_ip ?? <span class="never">{NEVER}</span>}</td>
      <td>
        <StatusBadge status={row.status} />
        {row.dormant && <span class="badge badge-dormant">Dormant</span>}
        {row.spike && <span class="badge badge-spike">Spike</span>}
        {/* In the Status cell (the column headers are a contract): the row names the key. */}
        {row.status !== 'revoked' && (
          <span class="row-actions">
            {row.status === 'active' && (
              <button type="button" class="small" onClick={() => onAction({ kind: 'rotate', row })}>
                Rotate
              </button>
            )}
            <button type="button" class="small" onClick={() => onAction({ kind: 'revoke', row })}>
              Revoke
            </button>
          </span>
        )}
      </td>
    </tr>
  );
}

function ScopeList({ scopes, unreadable }: { scopes: string[] | null; unreadable: boolean }) {
  if (scopes === null) return <span class="never">{unreadable ? NEVER : '…'}</span>;
  if (scopes.length === 0) return <span class="never">none</span>;
  return (
    <ul class="scope-list">
      {scopes.map((s) => (
        <li key={s}>
          <code>{s}</code>
        </li>
      ))}
    </ul>
  );
}
