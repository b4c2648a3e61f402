/** Status, "Dormant only" and the dormant threshold: each change asks the API again. */
import { useState } from 'preact/hooks';
import {
  DORMANT_DAYS_MAX,
  DORMANT_DAYS_MIN,
  parseDormantDays,
  STATUS_FILTERS,
  type StatusFilter,
  type UsageQuery,
} from './usage-query.ts';

type Props = {
  query: UsageQuery;
  /** The threshold the server applied (its default until the admin picks one). */
  dormantAfterDays: number | null;
  onChange: (change: Partial<UsageQuery>) => void;
};

const STATUS_LABELS: Record<StatusFilter, string> = {
  all: 'All',
  active: 'Active',
  expired: 'Expired',
  revoked: 'Revoked',
};

export function Filters({ query, dormantAfterDays, onChange }: Props) {
  return (
    <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
      <label>
        Status
        <select
          value={query.status}
          onChange={(e) => onChange({ status: e.currentTarget.value as StatusFilter })}
        >
          {STATUS_FILTERS.map((s) => (
            <option key={s} value={s}>
              {STATUS_LABELS[s]}
            </option>
          ))}
        </select>
      </label>
      <label class="check">
        <input
          type="checkbox"
          checked={query.dormantOnly}
          onChange={(e) => onChange({ dormantOnly: e.currentTarget.checked })}
        />
        Dormant only
      </label>
      <DormantDays
        value={query.dormantDays ?? dormantAfterDays}
        onCommit={(days) => onChange({ dormantDays: days })}
      />
    </form>
  );
}

/**
 * A number field applied on `change` (Enter, leaving the field, the spinner), not on every
 * keystroke: typing "365" must not ask for 3, then 36, then 365 days.
 */
function DormantDays(props: { value: number | null; onCommit: (days: number) => void }) {
  const [draft, setDraft] = useState<string | null>(null);
  const invalid = draft !== null && parseDormantDays(draft) === null;
  const commit = (text: string) => {
    const days = parseDormantDays(text);
    if (days === null) return;
    setDraft(null);
    if (days !== props.value) props.onCommit(days);
  };
  return (
    <div class="field">
      <label for="dormant-days">Dormant after (days)</label>
      <input
        id="dormant-days"
        type="number"
        inputMode="numeric"
        min={DORMANT_DAYS_MIN}
        max={DORMANT_DAYS_MAX}
        step={1}
        value={draft ?? (props.value === null ? '' : String(props.value))}
        onInput={(e) => setDraft(e.currentTarget.value)}
        onChange={(e) => commit(e.currentTarget.value)}
        aria-invalid={invalid}
        aria-describedby={invalid ? 'dormant-days-error' : undefined}
      />
      {invalid && (
        <p id="dormant-days-error" class="field-error">
          A whole number of days from {DORMANT_DAYS_MIN} to {DORMANT_DAYS_MAX}.
        </p>
      )}
    </div>
  );
}
