/** "Edit limits": a key's rate limits, quota and allowed IPs → PATCH …/api-keys/:keyId. */
import { useState } from 'preact/hooks';
import type { ApiError, ApiKey, Client } from '../api.ts';
import { ProblemMessage } from '../components.tsx';
import { Dialog, DialogActions } from '../dialog.tsx';
import { asApiError } from '../hooks.ts';
import { LimitsFields } from './limits-fields.tsx';
import { limitsFormOf, parseLimits, type LimitsBody } from './limits-form.ts';

/** Only what changed: an unchanged field is neither rewritten, audited nor announced. */
function changes(before: LimitsBody, after: LimitsBody): Partial<LimitsBody> {
  const out: Partial<LimitsBody> = {};
  for (const field of ['rate_limits', 'quota', 'allowed_ips'] as const) {
    if (JSON.stringify(before[field]) !== JSON.stringify(after[field])) {
      Object.assign(out, { [field]: after[field] });
    }
  }
  return out;
}

type Props = { client: Client; orgId: string; apiKey: ApiKey; onClose: () => void };

export function LimitsDialog({ client, orgId, apiKey, onClose }: Props) {
  const [form, setForm] = useState(() => limitsFormOf(apiKey));
  const [initial] = useState(() => parseLimits(limitsFormOf(apiKey), false));
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
      const changed = initial.ok ? changes(initial.value, parsed.value) : parsed.value;
      if (Object.keys(changed).length > 0) await client.updateKey(orgId, apiKey.id, changed);
      onClose();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  }

  return (
    <Dialog title="Edit limits" onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p class="hint">
          The limits of <strong>{apiKey.name}</strong> (<code>{apiKey.prefix}…</code>), shared with
          the keys of its rotation. Changes reach every instance within a second.
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
