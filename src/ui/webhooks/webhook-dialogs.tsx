/** The Webhooks page's dialogs: "Add endpoint", a secret shown once, and a confirm. */
import { useState } from 'preact/hooks';
import type { ApiError, Client, NewWebhook } from '../api.ts';
import { ProblemMessage } from '../components.tsx';
import { Dialog, DialogActions } from '../dialog.tsx';
import { asApiError } from '../hooks.ts';
import { Plaintext } from '../keys/plaintext.tsx';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../../webhooks/webhooks.types.ts';

type AddProps = {
  client: Client;
  orgId: string;
  onClose: () => void;
  onCreated: (created: NewWebhook) => void;
};

export function AddDialog({ client, orgId, onClose, onCreated }: AddProps) {
  const [url, setUrl] = useState('');
  const [types, setTypes] = useState<WebhookEventType[]>(['key.revoked', 'key.revoked_key_used']);
  const [description, setDescription] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const text = description.trim();
      const body = { url: url.trim(), event_types: types, ...(text && { description: text }) };
      onCreated(await client.createWebhook(orgId, body));
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  }

  const toggle = (t: WebhookEventType, on: boolean) =>
    setTypes((ts) => (on ? [...ts, t] : ts.filter((x) => x !== t)));
  return (
    <Dialog title="Add endpoint" onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <label for="hook-url">URL</label>
        <input
          id="hook-url"
          type="url"
          required
          maxLength={2048}
          aria-describedby="hook-url-hint"
          value={url}
          onInput={(e) => setUrl(e.currentTarget.value)}
        />
        <p id="hook-url-hint" class="hint">
          An https address on the internet: keytrail refuses private and local addresses.
        </p>
        <fieldset>
          <legend>Event types</legend>
          {WEBHOOK_EVENT_TYPES.map((t) => (
            <label class="check" key={t}>
              <input
                type="checkbox"
                checked={types.includes(t)}
                onChange={(e) => toggle(t, e.currentTarget.checked)}
              />
              {t}
            </label>
          ))}
        </fieldset>
        <label for="hook-description">Description</label>
        <input
          id="hook-description"
          type="text"
          maxLength={500}
          value={description}
          onInput={(e) => setDescription(e.currentTarget.value)}
        />
        {error && <ProblemMessage error={error} />}
        <DialogActions
          label="Add endpoint"
          busyLabel="Adding…"
          busy={busy}
          kind="primary"
          onCancel={onClose}
        />
      </form>
    </Dialog>
  );
}

type SecretProps = { title: string; secret: string; note: string; onClose: () => void };

export function SecretDialog({ title, secret, note, onClose }: SecretProps) {
  return (
    <Dialog title={title} onClose={onClose}>
      <Plaintext plaintext={secret} note={note} what="secret" onDone={onClose} />
    </Dialog>
  );
}

type ConfirmProps = {
  title: string;
  text: string;
  label: string;
  kind: 'primary' | 'danger';
  /** Resolves 'keep' when it opened another dialog in this one's place. */
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
};

export function ConfirmDialog({ title, text, label, kind, onConfirm, onClose }: ConfirmProps) {
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      if ((await onConfirm()) !== 'keep') onClose();
    } catch (e) {
      setError(asApiError(e));
      setBusy(false);
    }
  }
  return (
    <Dialog title={title} onClose={onClose}>
      <form class="dialog-form" onSubmit={(e) => void submit(e)}>
        <p>{text}</p>
        {error && <ProblemMessage error={error} />}
        <DialogActions
          label={label}
          busyLabel="Working…"
          busy={busy}
          kind={kind}
          onCancel={onClose}
          cancelFirst
        />
      </form>
    </Dialog>
  );
}
