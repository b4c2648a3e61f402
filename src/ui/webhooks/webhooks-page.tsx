/**
 * The Webhooks page (`#/webhooks`, SPEC §7, §10): the org's endpoints with "Add endpoint", the
 * signing secret shown once, enable and disable, "Rotate secret", "Send test event", delete with
 * a confirm, and each endpoint's Deliveries log with "Resend". Needs an org:admin key.
 */
import '../keys/dialogs.css';
import { useState } from 'preact/hooks';
import type { ApiError, Client, Webhook } from '../api.ts';
import type { Session } from '../app.tsx';
import { Loading, PageHeading, ProblemMessage, RelativeTime } from '../components.tsx';
import { useOpenDialog } from '../dialog.tsx';
import { exactTime } from '../format.ts';
import { asApiError, useApi, useNow, useTitle } from '../hooks.ts';
import { DeliveriesLog } from './deliveries.tsx';
import { AddDialog, ConfirmDialog, SecretDialog } from './webhook-dialogs.tsx';

type Open =
  | { kind: 'add' }
  | { kind: 'delete' | 'rotate'; hook: Webhook }
  | { kind: 'secret'; title: string; secret: string; note: string };

export function WebhooksPage({ session }: { session: Session }) {
  const { client, self } = session;
  const orgId = self.org_id;
  const [generation, setGeneration] = useState(0);
  const [open, setOpen, closed] = useOpenDialog<Open>();
  const [shown, setShown] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  // One action at a time: a double click sends one test event, not two.
  const [busy, setBusy] = useState(false);
  const hooks = useApi((signal) => client.webhooks(orgId, signal), [client, orgId, generation]);
  const now = useNow(60_000);
  useTitle('Webhooks');
  const reload = () => setGeneration((g) => g + 1);
  const close = (which: Open) => {
    closed(which);
    reload();
  };

  async function act(label: string, run: () => Promise<unknown>) {
    if (busy) return;
    setBusy(true);
    setError(null);
    setStatus('');
    try {
      await run();
      setStatus(label);
      reload();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <div class="page-head">
        <PageHeading>Webhooks</PageHeading>
        <button type="button" class="primary" onClick={() => setOpen({ kind: 'add' })}>
          Add endpoint
        </button>
      </div>
      <p class="muted">
        Key events are sent to these endpoints, signed per Standard Webhooks, retried for 3 days.
      </p>
      <p role="status">{status}</p>
      {error && <ProblemMessage error={error} />}
      {hooks.error && <ProblemMessage error={hooks.error} />}
      {!hooks.data && !hooks.error && <Loading label="Loading the endpoints…" />}
      {hooks.data?.length === 0 && <p class="empty">No endpoint yet.</p>}
      {hooks.data?.map((h) => (
        <section class="webhook" key={h.id} aria-label={`Endpoint ${h.url}`}>
          <h2>
            <code>{h.url}</code>
          </h2>
          {h.description && <p>{h.description}</p>}
          <p>
            {h.enabled
              ? 'Enabled'
              : `Disabled${h.disabled_reason ? ` (${h.disabled_reason})` : ''}`}
            {h.failing_since && (
              <>
                {' '}
                · failing since <RelativeTime iso={h.failing_since} now={now} />
              </>
            )}
            {' · '}
            {h.event_types.join(', ')}
          </p>
          <p class="row-actions">
            <button
              type="button"
              onClick={() =>
                void act(h.enabled ? 'Endpoint disabled.' : 'Endpoint enabled.', () =>
                  client.updateWebhook(orgId, h.id, { enabled: !h.enabled }),
                )
              }
            >
              {h.enabled ? 'Disable' : 'Enable'}
            </button>
            <button type="button" onClick={() => setOpen({ kind: 'rotate', hook: h })}>
              Rotate secret
            </button>
            {/* A disabled endpoint is sent nothing, a test event neither (the API says 422). */}
            {h.enabled && (
              <button
                type="button"
                onClick={() =>
                  void act('Test event queued: see the deliveries.', () =>
                    client.sendWebhookTest(orgId, h.id),
                  )
                }
              >
                Send test event
              </button>
            )}
            <button
              type="button"
              aria-expanded={shown === h.id}
              onClick={() => setShown(shown === h.id ? null : h.id)}
            >
              Deliveries
            </button>
            <button
              type="button"
              class="danger"
              onClick={() => setOpen({ kind: 'delete', hook: h })}
            >
              Delete
            </button>
          </p>
          {shown === h.id && (
            <DeliveriesLog
              client={client}
              orgId={orgId}
              hook={h}
              generation={generation}
              now={now}
            />
          )}
        </section>
      ))}
      {open && (
        <Dialogs
          client={client}
          orgId={orgId}
          open={open}
          setOpen={setOpen}
          onClose={() => close(open)}
        />
      )}
    </>
  );
}

type DialogsProps = {
  client: Client;
  orgId: string;
  open: Open;
  setOpen: (o: Open | null) => void;
  onClose: () => void;
};

function Dialogs({ client, orgId, open, setOpen, onClose }: DialogsProps) {
  if (open.kind === 'add') {
    return (
      <AddDialog
        client={client}
        orgId={orgId}
        onClose={onClose}
        onCreated={(created) =>
          setOpen({
            kind: 'secret',
            title: 'Endpoint added',
            secret: created.secret,
            note: `Deliveries to ${created.webhook.url} are signed with this secret.`,
          })
        }
      />
    );
  }
  if (open.kind === 'secret') {
    return (
      <SecretDialog title={open.title} secret={open.secret} note={open.note} onClose={onClose} />
    );
  }
  const { hook } = open;
  if (open.kind === 'delete') {
    return (
      <ConfirmDialog
        title="Delete endpoint"
        text={`Delete ${hook.url} and its delivery history? Nothing more is sent to it.`}
        label="Delete endpoint"
        kind="danger"
        onConfirm={() => client.deleteWebhook(orgId, hook.id)}
        onClose={onClose}
      />
    );
  }
  return (
    <ConfirmDialog
      title="Rotate secret"
      text={`A new signing secret for ${hook.url}. For 24 hours deliveries carry a signature by the old secret too.`}
      label="Rotate secret"
      kind="primary"
      onConfirm={async () => {
        const rotated = await client.rotateWebhookSecret(orgId, hook.id);
        setOpen({
          kind: 'secret',
          title: 'Secret rotated',
          secret: rotated.secret,
          note: `The old secret also signs until ${exactTime(rotated.previous_secret_expires_at)}: update your receiver before then.`,
        });
        return 'keep';
      }}
      onClose={onClose}
    />
  );
}
