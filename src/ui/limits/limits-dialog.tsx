/** "Edit limits": a key's rate limits, quota and allowed IPs → PATCH …/api-keys/:keyId. */
import { useState } from 'preact/hooks';
import type { ApiError, ApiKey, Client } from '../api.ts';
import { ProblemMessage } from '../components.tsx';
import { Dialog, DialogActions } from '../dialog.tsx';
import { asApiError } from '../hooks.ts';
import { LimitsFields } from './limits-fields.tsx';
import { limitsFormOf, parseLimits } from './limits-form.ts';

type Props = { client: Client; orgId: string; apiKey: ApiKey; onClose: () => void };

export function LimitsDialog({ client, orgId, apiKey, onClose }: Props) {
  const [form, setForm] = useState(() => limitsFormOf(apiKey));
  const [invalid, setInvalid] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    const parsed = parseLimits(form, true);
    if (!parsed.ok) return setInvalid(parsed.message);
    setInvalid(null);
    setError(null);
    setBusy(true);
    try {
      await client.updateKey(orgId, apiKey.id, parsed.value);
      onClose();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  }

  return (
    <Dialog title={`Limits of ${apiKey.name}`} onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p class="hint">
          Shared with the keys of its rotation. Changes reach every instance within a second.
        </p>
        <LimitsFields id="edit-limits" form={form} onChange={setForm} editing />
        {invalid && (
          <p class="field-error" role="alert">
            {invalid}
          </p>
        )}
        {error && <ProblemMessage error={error} />}
        <DialogActions
          label="Save limits"
          busyLabel="Saving…"
          busy={busy}
          kind="primary"
          onCancel={onClose}
        />
      </form>
    </Dialog>
  );
}
