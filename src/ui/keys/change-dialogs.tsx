/** Per-row dialogs: "Rotate" (with an overlap for the old key) and "Revoke" (with a reason). */
import { useState } from 'preact/hooks';
import type { ApiError, Client, RotatedKey, UsageRow } from '../api.ts';
import { ProblemMessage } from '../components.tsx';
import { Dialog, DialogActions, ReasonField } from '../dialog.tsx';
import { exactTime } from '../format.ts';
import { asApiError } from '../hooks.ts';
import { OVERLAPS, overlapSeconds, type OverlapId } from './key-form.ts';
import { Plaintext } from './plaintext.tsx';

/** The key a dialog acts on: a row of the table, or the key page's key. */
export type KeyRef = Pick<UsageRow, 'key_id' | 'name' | 'prefix'>;
type Props = { client: Client; orgId: string; row: KeyRef; onClose: () => void };

/** A request in flight and its failure, shared by both dialogs. */
function useSend() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const send = async <T,>(run: () => Promise<T>): Promise<T | null> => {
    if (busy) return null;
    setBusy(true);
    setError(null);
    try {
      return await run();
    } catch (e) {
      setError(asApiError(e));
      return null;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, send };
}

function oldKeyNote({ previous }: RotatedKey): string {
  if (previous.status === 'revoked' || !previous.expires_at) return 'The old key was revoked.';
  return `The old key keeps working until ${exactTime(previous.expires_at)}.`;
}

export function RotateDialog({ client, orgId, row, onClose }: Props) {
  const [choice, setChoice] = useState<OverlapId>('1h');
  const [hours, setHours] = useState('');
  const [invalid, setInvalid] = useState<string | null>(null);
  const [rotated, setRotated] = useState<RotatedKey | null>(null);
  const { busy, error, send } = useSend();

  const submit = async (event: Event) => {
    event.preventDefault();
    const seconds = overlapSeconds(choice, hours);
    if (!seconds.ok) return setInvalid(seconds.message);
    setInvalid(null);
    const key = await send(() => client.rotateKey(orgId, row.key_id, seconds.value));
    if (key) setRotated(key);
  };

  if (rotated)
    return (
      <Dialog title={`Key “${row.name}” rotated`} onClose={onClose}>
        <Plaintext plaintext={rotated.key} note={oldKeyNote(rotated)} onDone={onClose} />
      </Dialog>
    );
  return (
    <Dialog title={`Rotate “${row.name}”`} onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p>
          A new key with the same name, scopes, environment and expiry replaces{' '}
          <code>{row.prefix}…</code>.
        </p>
        <fieldset>
          <legend>How long the old key keeps working</legend>
          {OVERLAPS.map((o) => (
            <label key={o.id} class="check">
              <input
                type="radio"
                name="overlap"
                value={o.id}
                checked={choice === o.id}
                onChange={() => setChoice(o.id)}
              />{' '}
              {o.label}
            </label>
          ))}
          {choice === 'custom' && (
            <>
              <label for="rotate-hours">Overlap (hours)</label>
              <input
                id="rotate-hours"
                type="number"
                min={0}
                max={720}
                step="any"
                value={hours}
                aria-invalid={invalid !== null}
                aria-describedby={invalid ? 'rotate-hours-error' : undefined}
                onInput={(e) => setHours(e.currentTarget.value)}
              />
            </>
          )}
        </fieldset>
        {invalid && (
          <p id="rotate-hours-error" class="field-error" role="alert">
            {invalid}
          </p>
        )}
        {error && <ProblemMessage error={error} />}
        <DialogActions
          label="Rotate key"
          busyLabel="Rotating…"
          busy={busy}
          kind="primary"
          onCancel={onClose}
        />
      </form>
    </Dialog>
  );
}

export function RevokeDialog({ client, orgId, row, onClose }: Props) {
  const [reason, setReason] = useState('');
  const { busy, error, send } = useSend();

  const submit = async (event: Event) => {
    event.preventDefault();
    const done = await send(() => client.revokeKey(orgId, row.key_id, reason.trim() || null));
    if (done) onClose();
  };

  return (
    <Dialog title={`Revoke “${row.name}”?`} onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p>
          Every request with <code>{row.prefix}…</code> is refused (401) from now on. This cannot be
          undone.
        </p>
        <ReasonField id="revoke-reason" value={reason} onInput={setReason} />
        {error && <ProblemMessage error={error} />}
        <DialogActions
          label="Revoke key"
          busyLabel="Revoking…"
          busy={busy}
          kind="danger"
          onCancel={onClose}
        />
      </form>
    </Dialog>
  );
}
