/**
 * A new key's plaintext, shown once: a copy button and a warning. It lives in this component's
 * props only; closing the dialog unmounts it, and nothing else ever held it (no state above, no
 * storage, no URL, no log).
 */
import { useEffect, useRef, useState } from 'preact/hooks';

/** `what`: "key" (the default) or "secret" (a webhook's signing secret). */
type Props = { plaintext: string; note?: string; what?: string; onDone: () => void };

export function Plaintext({ plaintext, note, what = 'key', onDone }: Props) {
  const [copied, setCopied] = useState('');
  const copyRef = useRef<HTMLButtonElement>(null);
  // The form that had the focus is gone: the copy button is what the admin wants next.
  useEffect(() => copyRef.current?.focus(), []);
  const copy = () =>
    navigator.clipboard.writeText(plaintext).then(
      () => setCopied('Copied to the clipboard.'),
      () => setCopied(`Could not copy: select the ${what} and copy it by hand.`),
    );
  return (
    <>
      <p class="message message-warning">
        Copy the {what} now: this is the only time it is shown, it will not be shown again.
      </p>
      {note && <p>{note}</p>}
      <p class="secret">
        <code id="new-key-plaintext">{plaintext}</code>
      </p>
      <p class="dialog-actions">
        <button
          type="button"
          ref={copyRef}
          aria-describedby="new-key-plaintext"
          onClick={() => void copy()}
        >
          Copy
        </button>
        <span role="status" class="copy-status">
          {copied}
        </span>
      </p>
      <p class="dialog-actions">
        <button type="button" class="primary" onClick={onDone}>
          Done
        </button>
      </p>
    </>
  );
}
