/**
 * A key's limits in a dialog (SPEC §11): its own rate limits (none: the org default applies),
 * a quota with an optional daily or monthly refill, and the addresses it may be used from.
 */
import type { LimitsForm, Refill } from './limits-form.ts';
import { RateLimitsEditor } from './rate-limits-editor.tsx';

type Props = {
  id: string;
  form: LimitsForm;
  onChange: (form: LimitsForm) => void;
  /** Editing an existing key: `remaining` can be set. */
  editing: boolean;
};

export function LimitsFields({ id, form, onChange, editing }: Props) {
  const set = (change: Partial<LimitsForm>) => onChange({ ...form, ...change });
  const field = (name: string) => `${id}-${name}`;
  return (
    <>
      <RateLimitsEditor
        id={field('rate')}
        legend="Rate limits"
        empty="None of its own: the org's default rate limits apply, if any."
        rows={form.rows}
        onChange={(rows) => set({ rows })}
      />
      <fieldset>
        <legend>Quota</legend>
        <label class="check">
          <input
            type="checkbox"
            checked={form.quotaOn}
            onChange={(e) => set({ quotaOn: e.currentTarget.checked })}
          />
          A budget of requests
        </label>
        {form.quotaOn && (
          <>
            <label for={field('quota')}>Requests in the quota</label>
            <input
              id={field('quota')}
              type="number"
              required
              min={1}
              step={1}
              value={form.quotaLimit}
              onInput={(e) => set({ quotaLimit: e.currentTarget.value })}
            />
            <label for={field('refill')}>Refill</label>
            <select
              id={field('refill')}
              value={form.refill}
              onChange={(e) => set({ refill: e.currentTarget.value as Refill })}
            >
              <option value="none">Never</option>
              <option value="day">Every day (UTC)</option>
              <option value="month">Every month (UTC)</option>
            </select>
            {form.refill !== 'none' && (
              <>
                <label for={field('refill-amount')}>Refill to</label>
                <input
                  id={field('refill-amount')}
                  type="number"
                  min={1}
                  step={1}
                  placeholder={form.quotaLimit}
                  value={form.refillAmount}
                  onInput={(e) => set({ refillAmount: e.currentTarget.value })}
                />
              </>
            )}
            {editing && (
              <>
                <label for={field('remaining')}>Set remaining to</label>
                <input
                  id={field('remaining')}
                  type="number"
                  min={0}
                  step={1}
                  aria-describedby={field('remaining-hint')}
                  value={form.remaining}
                  onInput={(e) => set({ remaining: e.currentTarget.value })}
                />
                <p id={field('remaining-hint')} class="hint">
                  Optional: leave it empty to keep what remains.
                </p>
              </>
            )}
          </>
        )}
      </fieldset>
      <label for={field('ips')}>Allowed IPs</label>
      <textarea
        id={field('ips')}
        rows={3}
        aria-describedby={field('ips-hint')}
        value={form.allowedIps}
        onInput={(e) => set({ allowedIps: e.currentTarget.value })}
      />
      <p id={field('ips-hint')} class="hint">
        Addresses or networks (CIDR), one per line, e.g. <code>203.0.113.0/24</code>. Empty: any
        address.
      </p>
    </>
  );
}
