/**
 * The dormant-key policy (SPEC §10): on or off, after how many days, notify or revoke, which
 * environments and scopes it never touches; "Save policy", a "Preview" of exactly what the next
 * run of the saved policy does, and what the last run did.
 */
import { useEffect, useState } from 'preact/hooks';
import type { ApiError, Client, DormantPolicy, DormantPreview } from '../api.ts';
import { Loading, ProblemMessage } from '../components.tsx';
import { asApiError, useApi, useNow } from '../hooks.ts';
import { parseScopes } from '../keys/key-form.ts';
import { LastRun, PreviewPanel } from './dormant-preview.tsx';

type Form = {
  enabled: boolean;
  afterDays: string;
  action: 'notify' | 'revoke';
  excludeLive: boolean;
  excludeTest: boolean;
  excludeScopes: string;
};

const formOf = (p: DormantPolicy): Form => ({
  enabled: p.enabled,
  afterDays: String(p.after_days),
  action: p.action,
  excludeLive: p.exclude_environments.includes('live'),
  excludeTest: p.exclude_environments.includes('test'),
  excludeScopes: p.exclude_scopes.join(' '),
});

const sameForm = (a: Form, b: Form) => JSON.stringify(a) === JSON.stringify(b);

type Props = { client: Client; orgId: string };

export function DormantSection({ client, orgId }: Props) {
  const loaded = useApi((signal) => client.dormantPolicy(orgId, signal), [client, orgId]);
  const [saved, setSaved] = useState<DormantPolicy | null>(null);
  useEffect(() => setSaved(loaded.data), [loaded.data]);
  if (loaded.error) return <ProblemMessage error={loaded.error} />;
  if (!saved) return <Loading label="Loading the policy…" />;
  return <DormantForm client={client} orgId={orgId} saved={saved} onSaved={setSaved} />;
}

type FormProps = Props & { saved: DormantPolicy; onSaved: (p: DormantPolicy) => void };

function DormantForm({ client, orgId, saved, onSaved }: FormProps) {
  const now = useNow(60_000);
  const [form, setForm] = useState(() => formOf(saved));
  const [invalid, setInvalid] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  const [preview, setPreview] = useState<DormantPreview | null>(null);
  const set = (change: Partial<Form>) => {
    setForm((f) => ({ ...f, ...change }));
    setStatus('');
  };
  const dirty = !sameForm(form, formOf(saved));

  async function save(event: Event) {
    event.preventDefault();
    if (busy) return;
    const scopes = parseScopes(form.excludeScopes);
    if (!scopes.ok) return setInvalid(scopes.message);
    setInvalid(null);
    setError(null);
    setBusy(true);
    try {
      const policy = await client.saveDormantPolicy(orgId, {
        enabled: form.enabled,
        after_days: Number(form.afterDays),
        action: form.action,
        exclude_environments: [
          ...(form.excludeLive ? (['live'] as const) : []),
          ...(form.excludeTest ? (['test'] as const) : []),
        ],
        exclude_scopes: scopes.value,
      });
      onSaved(policy);
      setForm(formOf(policy));
      setPreview(null);
      setStatus('Policy saved.');
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  }

  async function showPreview() {
    setError(null);
    setStatus('Loading the preview…');
    try {
      setPreview(await client.dormantPreview(orgId));
      setStatus('');
    } catch (e) {
      setError(asApiError(e));
      setStatus('');
    }
  }

  return (
    <form class="policy-form" onSubmit={(e) => void save(e)}>
      <label class="check">
        <input
          type="checkbox"
          checked={form.enabled}
          onChange={(e) => set({ enabled: e.currentTarget.checked })}
        />
        Enabled: apply the policy every day
      </label>
      <label for="dormant-after">Dormant after (days)</label>
      <input
        id="dormant-after"
        type="number"
        required
        min={7}
        max={3650}
        step={1}
        value={form.afterDays}
        onInput={(e) => set({ afterDays: e.currentTarget.value })}
      />
      <fieldset>
        <legend>Action</legend>
        {(['notify', 'revoke'] as const).map((action) => (
          <label class="check" key={action}>
            <input
              type="radio"
              name="dormant-action"
              value={action}
              checked={form.action === action}
              onChange={() => set({ action })}
            />
            {action === 'notify'
              ? 'Notify: a key.dormant notice in the audit trail and to webhooks'
              : 'Revoke the key'}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Never act on</legend>
        <label class="check">
          <input
            type="checkbox"
            checked={form.excludeLive}
            onChange={(e) => set({ excludeLive: e.currentTarget.checked })}
          />
          live keys
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={form.excludeTest}
            onChange={(e) => set({ excludeTest: e.currentTarget.checked })}
          />
          test keys
        </label>
        <label for="dormant-scopes">Keys holding any of these scopes</label>
        <input
          id="dormant-scopes"
          type="text"
          value={form.excludeScopes}
          aria-invalid={invalid !== null}
          aria-describedby={invalid ? 'dormant-scopes-error' : undefined}
          onInput={(e) => set({ excludeScopes: e.currentTarget.value })}
        />
        {invalid && (
          <p id="dormant-scopes-error" class="field-error" role="alert">
            {invalid}
          </p>
        )}
      </fieldset>
      <div class="form-actions">
        <button type="submit" class="primary" aria-disabled={busy}>
          Save policy
        </button>
        <button type="button" onClick={() => void showPreview()}>
          Preview
        </button>
        <span role="status">{status}</span>
      </div>
      {error && <ProblemMessage error={error} />}
      <LastRun run={saved.last_run} now={now} />
      {preview && (
        <section aria-label="Preview">
          {dirty && (
            <p class="message message-info">
              The preview is of the saved policy: save to preview your changes.
            </p>
          )}
          <PreviewPanel preview={preview} now={now} />
        </section>
      )}
    </form>
  );
}
