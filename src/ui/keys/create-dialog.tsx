/** "Create key": name, environment, scopes, expiry → POST …/api-keys; the plaintext once. */
import { useState } from 'preact/hooks';
import type { ApiError, Client, NewKey } from '../api.ts';
import { ProblemMessage } from '../components.tsx';
import { Dialog, DialogActions } from '../dialog.tsx';
import { asApiError } from '../hooks.ts';
import { parseExpiry, parseScopes } from './key-form.ts';
import { LimitsFields } from '../limits/limits-fields.tsx';
import { EMPTY_LIMITS, parseLimits } from '../limits/limits-form.ts';
import { Plaintext } from './plaintext.tsx';

type Props = { client: Client; orgId: string; onClose: () => void };

export function CreateDialog({ client, orgId, onClose }: Props) {
  const [created, setCreated] = useState<NewKey | null>(null);
  return (
    <Dialog title={created ? 'Key created' : 'Create key'} onClose={onClose}>
      {created ? (
        <Plaintext
          plaintext={created.key}
          note={`“${created.api_key.name}” (${created.api_key.prefix}…) is active.`}
          onDone={onClose}
        />
      ) : (
        <CreateForm client={client} orgId={orgId} onCreated={setCreated} onCancel={onClose} />
      )}
    </Dialog>
  );
}

type FormProps = {
  client: Client;
  orgId: string;
  onCreated: (created: NewKey) => void;
  onCancel: () => void;
};

function CreateForm({ client, orgId, onCreated, onCancel }: FormProps) {
  const [name, setName] = useState('');
  const [environment, setEnvironment] = useState<'live' | 'test'>('live');
  const [scopes, setScopes] = useState('');
  const [expires, setExpires] = useState('');
  const [limits, setLimits] = useState(EMPTY_LIMITS);
  const [invalid, setInvalid] = useState<{
    field: 'scopes' | 'expires' | 'limits';
    message: string;
  } | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    const parsedScopes = parseScopes(scopes);
    if (!parsedScopes.ok) return setInvalid({ field: 'scopes', message: parsedScopes.message });
    const expiry = parseExpiry(expires, Date.now());
    if (!expiry.ok) return setInvalid({ field: 'expires', message: expiry.message });
    const parsedLimits = parseLimits(limits, false);
    if (!parsedLimits.ok) return setInvalid({ field: 'limits', message: parsedLimits.message });
    setInvalid(null);
    setError(null);
    setBusy(true);
    try {
      const body = { name: name.trim(), environment, scopes: parsedScopes.value };
      const { rate_limits, quota, allowed_ips } = parsedLimits.value;
      onCreated(
        await client.createKey(orgId, {
          ...body,
          expires_at: expiry.value,
          ...(rate_limits.length > 0 && { rate_limits }),
          ...(quota && { quota }),
          ...(allowed_ips.length > 0 && { allowed_ips }),
        }),
      );
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  };
  const fieldError = (field: 'scopes' | 'expires' | 'limits') =>
    invalid?.field === field ? (
      <p id={`create-${field}-error`} class="field-error" role="alert">
        {invalid.message}
      </p>
    ) : null;
  const describedBy = (field: 'scopes' | 'expires') =>
    `create-${field}-hint${invalid?.field === field ? ` create-${field}-error` : ''}`;

  return (
    <form
      class="dialog-form"
      onSubmit={(e) => void submit(e)}
      // A required field inside the closed Limits section: open it, so the browser can show it.
      onInvalidCapture={(e) => {
        const section = (e.target as Element).closest('details');
        if (section) section.open = true;
      }}
    >
      <label for="create-name">Name</label>
      <input
        id="create-name"
        type="text"
        required
        maxLength={200}
        value={name}
        onInput={(e) => setName(e.currentTarget.value)}
      />
      <label for="create-environment">Environment</label>
      <select
        id="create-environment"
        value={environment}
        onChange={(e) => setEnvironment(e.currentTarget.value === 'test' ? 'test' : 'live')}
      >
        <option value="live">live</option>
        <option value="test">test</option>
      </select>
      <label for="create-scopes">Scopes</label>
      <input
        id="create-scopes"
        type="text"
        value={scopes}
        aria-invalid={invalid?.field === 'scopes'}
        aria-describedby={describedBy('scopes')}
        onInput={(e) => setScopes(e.currentTarget.value)}
      />
      <p id="create-scopes-hint" class="hint">
        Separated by spaces or commas, e.g. <code>orders:read orders:write</code>. You can only
        grant scopes your own key holds.
      </p>
      {fieldError('scopes')}
      <label for="create-expires">Expires</label>
      <input
        id="create-expires"
        type="datetime-local"
        value={expires}
        aria-invalid={invalid?.field === 'expires'}
        aria-describedby={describedBy('expires')}
        onInput={(e) => setExpires(e.currentTarget.value)}
      />
      <p id="create-expires-hint" class="hint">
        Optional, in your local time. Leave it empty for a key that does not expire.
      </p>
      {fieldError('expires')}
      <details class="limits">
        <summary>Limits (optional)</summary>
        <LimitsFields id="create-limits" form={limits} onChange={setLimits} editing={false} />
      </details>
      {fieldError('limits')}
      {error && <ProblemMessage error={error} />}
      <DialogActions
        label="Create"
        busyLabel="Creating…"
        busy={busy}
        kind="primary"
        onCancel={onCancel}
      />
    </form>
  );
}
