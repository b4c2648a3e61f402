/**
 * "Revoke selected": one confirm for the dormant keys ticked in the table, then one DELETE per
 * key (each its own audited revocation), in turn; the result says how many succeeded and which
 * failed, and why.
 */
import { useState } from 'preact/hooks';
import type { Client, UsageRow } from '../api.ts';
import { Dialog, DialogActions, ReasonField } from '../dialog.tsx';
import { asApiError } from '../hooks.ts';

type Props = { client: Client; orgId: string; rows: UsageRow[]; onClose: () => void };
type Outcome = { revoked: number; failed: { name: string; why: string }[] };

export function BulkRevokeDialog({ client, orgId, rows, onClose }: Props) {
  const [reason, setReason] = useState('');
  const [progress, setProgress] = useState<number | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const count = `${rows.length} ${rows.length === 1 ? 'key' : 'keys'}`;

  const submit = async (event: Event) => {
    event.preventDefault();
    if (progress !== null) return;
    const result: Outcome = { revoked: 0, failed: [] };
    for (const [i, row] of rows.entries()) {
      setProgress(i);
      try {
        await client.revokeKey(orgId, row.key_id, reason.trim() || null);
        result.revoked++;
      } catch (e) {
        result.failed.push({ name: row.name, why: asApiError(e).detail });
      }
    }
    setOutcome(result);
  };

  if (outcome)
    return (
      <Dialog title={`Revoke ${count}`} onClose={onClose}>
        <p role="status">
          {outcome.revoked} revoked, {outcome.failed.length} failed.
        </p>
        {outcome.failed.length > 0 && (
          <ul class="message message-error">
            {outcome.failed.map((f) => (
              <li key={f.name}>
                {f.name}: {f.why}
              </li>
            ))}
          </ul>
        )}
        <p class="dialog-actions">
          <button type="button" class="primary" ref={(b) => b?.focus()} onClick={onClose}>
            Done
          </button>
        </p>
      </Dialog>
    );
  return (
    <Dialog title={`Revoke ${count}`} onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p>Every request with these keys is refused (401) from now on:</p>
        <ul class="bulk-list">
          {rows.map((r) => (
            <li key={r.key_id}>
              {r.name} (<code>{r.prefix}…</code>)
            </li>
          ))}
        </ul>
        <ReasonField id="bulk-reason" rows={2} value={reason} onInput={setReason} />
        <DialogActions
          label={`Revoke ${count}`}
          busyLabel={`Revoking ${(progress ?? 0) + 1} of ${rows.length}…`}
          busy={progress !== null}
          kind="danger"
          onCancel={onClose}
        />
      </form>
    </Dialog>
  );
}
