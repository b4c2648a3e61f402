/**
 * Up to three rate limits as rows of fields (name, requests, window), for the org default on the
 * Policies page and a key's own limits. Each field is labelled with its row, so a screen reader
 * (and a test) can tell "Requests of limit 2" from the others.
 */
import './limits.css';
import { emptyRow, MAX_RATE_POLICIES, WINDOW_UNITS, type RateRow } from './rate-rows.ts';

type Props = {
  /** Prefixes the fields' ids: two editors can share a page. */
  id: string;
  rows: RateRow[];
  onChange: (rows: RateRow[]) => void;
  legend: string;
  /** Said when there is no row. */
  empty: string;
};

export function RateLimitsEditor({ id, rows, onChange, legend, empty }: Props) {
  const set = (i: number, change: Partial<RateRow>) =>
    onChange(rows.map((r, j) => (j === i ? { ...r, ...change } : r)));
  return (
    <fieldset class="rate-rows">
      <legend>{legend}</legend>
      {rows.length === 0 && <p class="muted">{empty}</p>}
      {rows.map((row, i) => {
        const n = i + 1;
        const field = (name: string) => `${id}-${name}-${n}`;
        return (
          <div class="rate-row" key={i}>
            <label for={field('name')}>
              Name <span class="sr-only">of limit {n}</span>
            </label>
            <input
              id={field('name')}
              type="text"
              required
              maxLength={32}
              value={row.name}
              onInput={(e) => set(i, { name: e.currentTarget.value })}
            />
            <label for={field('limit')}>
              Requests <span class="sr-only">of limit {n}</span>
            </label>
            <input
              id={field('limit')}
              type="number"
              required
              min={1}
              step={1}
              value={row.limit}
              onInput={(e) => set(i, { limit: e.currentTarget.value })}
            />
            <label for={field('window')}>
              per <span class="sr-only">window of limit {n}</span>
            </label>
            <input
              id={field('window')}
              type="number"
              required
              min={1}
              step={1}
              value={row.window}
              onInput={(e) => set(i, { window: e.currentTarget.value })}
            />
            <select
              aria-label={`Window unit of limit ${n}`}
              value={row.unit}
              onChange={(e) => set(i, { unit: e.currentTarget.value as RateRow['unit'] })}
            >
              {WINDOW_UNITS.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.label}
                </option>
              ))}
            </select>
            <button
              type="button"
              class="small"
              onClick={() => onChange(rows.filter((_, j) => j !== i))}
            >
              Remove <span class="sr-only">limit {n}</span>
            </button>
          </div>
        );
      })}
      {rows.length < MAX_RATE_POLICIES && (
        <button
          type="button"
          class="small"
          onClick={() => onChange([...rows, emptyRow(rows.length)])}
        >
          Add a limit
        </button>
      )}
    </fieldset>
  );
}
