/**
 * Sign in: the admin pastes an org key. The page calls GET /api/keys/self with it to learn the
 * org; nothing is stored on the server, and the key is kept in this tab's sessionStorage only
 * when the box is ticked.
 */
import type { TargetedEvent } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.ts';
import { ProblemMessage } from './components.tsx';
import { useTitle } from './hooks.ts';

export type SignInHandler = (key: string, keepInTab: boolean) => Promise<ApiError | null>;

type Props = { onSignIn: SignInHandler; notice: string | null };

// The key format (SPEC §4): the server checks the checksum; this only catches a partial paste.
const KEY_SHAPE = /^sk_(live|test)_[0-9A-Za-z]{38}$/;
const NOT_A_KEY = new ApiError(
  0,
  'Not a complete keytrail key',
  'a key reads sk_live_ or sk_test_ and 38 letters and digits; paste the whole key',
  'malformed',
);

export function SignIn({ onSignIn, notice }: Props) {
  const [key, setKey] = useState('');
  const [keepInTab, setKeepInTab] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [empty, setEmpty] = useState(false);
  const field = useRef<HTMLInputElement>(null);
  useTitle('Sign in');
  // The one thing to do here is paste: start in the field (its label is read out with it).
  useEffect(() => field.current?.focus(), []);

  async function submit(event: TargetedEvent<HTMLFormElement>) {
    event.preventDefault();
    // Pasted keys often carry a trailing newline or space.
    const trimmed = key.trim();
    setEmpty(trimmed === '');
    if (trimmed === '' || busy) return;
    // A masked prefix or a key with a stray character inside is not a key: say so, rather than
    // let the browser refuse the header and report a network error.
    if (!KEY_SHAPE.test(trimmed)) {
      setError(NOT_A_KEY);
      return;
    }
    setBusy(true);
    setError(null);
    const failure = await onSignIn(trimmed, keepInTab);
    // On success this component is gone; on failure the field keeps the key for a retry.
    if (failure) {
      setError(failure);
      setBusy(false);
    }
  }

  return (
    <main id="main" class="sign-in">
      <h1>Sign in to keytrail admin</h1>
      <p class="lead">
        Paste an API key of your organisation. Listing keys needs the <code>usage:read</code> scope
        (and <code>keys:read</code> for their scopes); <code>org:admin</code> holds both.
      </p>
      {notice && (
        // An alert: inserted with its text, a status region would not be read out.
        <p class="message message-info" role="alert">
          {notice}
        </p>
      )}
      {error && <ProblemMessage error={error} />}
      <form class="sign-in-form" onSubmit={(e) => void submit(e)} noValidate>
        <label for="api-key">API key</label>
        <input
          ref={field}
          id="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          autocapitalize="off"
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
          aria-invalid={empty}
          aria-describedby={empty ? 'api-key-empty' : undefined}
        />
        {empty && (
          <p id="api-key-empty" class="field-error">
            Paste a key first.
          </p>
        )}
        <label class="check">
          <input
            type="checkbox"
            checked={keepInTab}
            onChange={(e) => setKeepInTab(e.currentTarget.checked)}
          />
          Keep me signed in in this tab (sessionStorage; cleared when the tab closes)
        </label>
        {/* Not disabled while busy: a disabled button drops the keyboard focus. */}
        <button type="submit" class="primary" aria-disabled={busy}>
          Sign in
        </button>
      </form>
      <p class="hint">
        The key is sent in a header only, never in a URL, and is not stored on the server.
      </p>
    </main>
  );
}
