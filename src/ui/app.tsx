/**
 * The admin app: a session (the API client bound to the pasted key, and what the key said about
 * itself) or the sign-in page; hash routes choose the page.
 */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { createClient, type ApiError, type Client, type KeySelf } from './api.ts';
import { AuditPage } from './audit/audit-page.tsx';
import { Loading, PageHeading } from './components.tsx';
import { ExportPage } from './export/export-page.tsx';
import { asApiError, useRoute, useTitle } from './hooks.ts';
import { KeyPage } from './key/key-page.tsx';
import { KeysPage } from './keys/keys-page.tsx';
import { INITIAL_VIEW, type KeysView } from './keys/usage-query.ts';
import { useScopes } from './keys/use-scopes.ts';
import {
  auditHref,
  exportHref,
  keysHref,
  policiesHref,
  webhooksHref,
  type Route,
} from './route.ts';
import { WebhooksPage } from './webhooks/webhooks-page.tsx';
import { PoliciesPage } from './policies/policies-page.tsx';
import { forgetKey, keepKey, maskKey, storedKey } from './session.ts';
import { SignIn } from './sign-in.tsx';

export type Session = {
  client: Client;
  self: KeySelf;
  orgName: string | null;
  /** The display prefix ("sk_live_abcd1234…"): the most of the key the DOM ever holds. */
  maskedKey: string;
};

const EXPIRED = 'You were signed out: the API key is no longer valid (revoked or expired).';
const SIGNED_OUT = 'Signed out. The key was cleared from this tab.';

/** Checks the key with GET /api/keys/self; a failure comes back as the API's problem. */
async function startSession(key: string, onExpired: (client: Client) => void): Promise<Session> {
  let active = false;
  // A 401 during sign-in is the sign-in's own answer; only a started session can expire.
  const client: Client = createClient(key, () => active && onExpired(client));
  const self = await client.self();
  // The org's name is a courtesy for the header: its failure must not block sign-in.
  const org = await client.org(self.org_id).catch(() => null);
  active = true;
  return { client, self, orgName: org?.name ?? null, maskedKey: maskKey(key) };
}

/** The client of the session in force (one app per page): requests of an ended one are cut. */
const current: { client: Client | null } = { client: null };

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [resuming, setResuming] = useState(() => storedKey() !== null);
  const route = useRoute();

  const end = useCallback((message: string, from?: Client) => {
    // A late 401 of a session that already ended must not end the one started since.
    if (from && from !== current.client) return;
    current.client?.dispose();
    current.client = null;
    forgetKey();
    setSession(null);
    setNotice(message);
  }, []);

  const signIn = useCallback(
    async (key: string, keepInTab: boolean): Promise<ApiError | null> => {
      try {
        const started = await startSession(key, (client) => end(EXPIRED, client));
        current.client = started.client;
        keepKey(key, keepInTab);
        setNotice(null);
        setSession(started);
        return null;
      } catch (error) {
        return asApiError(error);
      }
    },
    [end],
  );

  // A key kept in this tab resumes the session after a reload, if it still works.
  useEffect(() => {
    const key = storedKey();
    if (!key) return;
    void signIn(key, true).then((failure) => {
      // Only a refused key is forgotten; an outage keeps it for the next reload.
      if (failure?.status === 401)
        end(`The key kept in this tab no longer works: ${failure.detail}`);
      else if (failure)
        setNotice(`Could not resume the session (${failure.title}): reload to retry.`);
      setResuming(false);
    });
  }, [signIn, end]);

  if (resuming) return <Loading label="Signing in…" />;
  if (!session) return <SignIn onSignIn={signIn} notice={notice} />;
  return (
    <Shell session={session} onSignOut={() => end(SIGNED_OUT)}>
      <Pages route={route} session={session} />
    </Shell>
  );
}

/** The signed-in pages, and what outlives a visit to one of them (the table's view, scopes). */
function Pages({ route, session }: { route: Route; session: Session }) {
  const [keysView, setKeysView] = useState<KeysView>(INITIAL_VIEW);
  const scopes = useScopes(session.client, session.self.org_id);
  // Keyed by id: another key's page never shows the previous key's fields while it loads.
  if (route.page === 'key')
    return <KeyPage key={route.keyId} session={session} keyId={route.keyId} />;
  if (route.page === 'audit') return <AuditPage session={session} keys={scopes} />;
  if (route.page === 'export') return <ExportPage session={session} />;
  if (route.page === 'policies') return <PoliciesPage session={session} />;
  if (route.page === 'webhooks') return <WebhooksPage session={session} />;
  if (route.page === 'not-found') return <NotFound />;
  return <KeysPage session={session} view={keysView} setView={setKeysView} scopes={scopes} />;
}

function NotFound() {
  useTitle('Not found');
  return (
    <>
      <PageHeading>Page not found</PageHeading>
      <p>
        <a href={keysHref}>Back to API keys</a>
      </p>
    </>
  );
}

// The hash is the router's: following "#main" would leave the page, so move focus instead.
function skipToContent(event: Event) {
  event.preventDefault();
  document.getElementById('main')?.focus();
}

type ShellProps = { session: Session; onSignOut: () => void; children: ComponentChildren };

const NAV = [
  { href: keysHref, label: 'API keys', pages: ['keys', 'key'] },
  { href: auditHref, label: 'Audit', pages: ['audit'] },
  { href: exportHref, label: 'Export', pages: ['export'] },
  { href: policiesHref, label: 'Policies', pages: ['policies'] },
  { href: webhooksHref, label: 'Webhooks', pages: ['webhooks'] },
];

function Shell({ session, onSignOut, children }: ShellProps) {
  const route = useRoute();
  const { self, orgName, maskedKey } = session;
  return (
    <>
      <a class="skip-link" href="#main" onClick={skipToContent}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={keysHref}>
          keytrail admin
        </a>
        <nav class="tabs" aria-label="Pages of the admin">
          {NAV.map((n) => (
            <a
              key={n.href}
              href={n.href}
              aria-current={n.pages.includes(route.page) ? 'page' : undefined}
            >
              {n.label}
            </a>
          ))}
        </nav>
        <p class="who">
          <span class="org">{orgName ?? self.org_id}</span>{' '}
          <span class="muted">
            signed in with {self.name} (<code>{maskedKey}</code>)
          </span>
        </p>
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
