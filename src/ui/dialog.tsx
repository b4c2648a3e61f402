/**
 * A modal dialog on the native <dialog> (showModal: the rest of the page is inert, Escape
 * closes it). Named by its heading; focus moves into it on open and back to the opener on close.
 */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';
import { MAX_REASON } from './keys/key-form.ts';

type Props = { title: string; onClose: () => void; children: ComponentChildren };

/**
 * A page's open dialog (one at a time: they are modal). Open one with a new object each time;
 * `closed(which)` clears that one only: a dialog closed by Escape reports it a moment later,
 * when the same button may have opened the next one already (Escape, then Enter at once).
 */
export function useOpenDialog<T extends object>() {
  const [open, setOpen] = useState<T | null>(null);
  const closed = useCallback(
    (which: T) => setOpen((current) => (current === which ? null : current)),
    [],
  );
  return [open, setOpen, closed] as const;
}

export function Dialog({ title, onClose, children }: Props) {
  const ref = useRef<HTMLDialogElement>(null);
  const headingId = useId();
  // Set on unmount: the close() below must not report a second close to the page.
  const gone = useRef(false);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    const dialog = ref.current;
    dialog?.showModal();
    return () => {
      gone.current = true;
      // While the modal is open the rest of the page is inert and cannot take the focus.
      if (dialog?.open) dialog.close();
      // The opener is still in the table (rows are keyed by id); the page heading otherwise.
      const restore = () => {
        if (opener?.isConnected) opener.focus();
        else document.querySelector<HTMLElement>('h1')?.focus();
      };
      restore();
      // Chromium may leave the focus on <body> when the modal's inertness lifts late: retry once.
      setTimeout(() => {
        if (document.activeElement === document.body) restore();
      }, 0);
    };
  }, []);
  // Closed (Escape) and opened again before the page re-rendered: the two state changes meet in
  // one render, this dialog is kept, and it must show itself again.
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open && !gone.current) dialog.showModal();
  });
  // Escapes whose native 'close' event is still to come (see onCancel).
  const escaped = useRef(0);
  return (
    <dialog
      ref={ref}
      class="dialog"
      aria-labelledby={headingId}
      // Escape: the page hears of it now, in the key's own task, with the handler of this
      // opening. The native 'close' event comes a task later, when a key pressed at once (Enter
      // on the opener) may have opened the next dialog and re-rendered this one with its handler.
      onCancel={(e) => {
        e.preventDefault();
        escaped.current += 1;
        ref.current?.close();
        onClose();
      }}
      // Any other close: when its event comes, the dialog may be open again (reopened at once,
      // see above), and then it is not the dialog's close.
      onClose={() => {
        if (escaped.current > 0) escaped.current -= 1;
        else if (!gone.current && !ref.current?.open) onClose();
      }}
    >
      <h2 id={headingId}>{title}</h2>
      {children}
    </dialog>
  );
}

type ActionsProps = {
  /** The submit button's text, and what it says while the request runs. */
  label: string;
  busyLabel: string;
  busy: boolean;
  kind: 'primary' | 'danger';
  onCancel: () => void;
  /**
   * Cancel takes the focus when the dialog opens: in a dialog with nothing to fill in, the key
   * that opened it (Enter) must not also confirm it.
   */
  cancelFirst?: boolean;
};

/** A dialog form's submit and Cancel buttons (aria-disabled while busy: it keeps the focus). */
export function DialogActions({
  label,
  busyLabel,
  busy,
  kind,
  onCancel,
  cancelFirst,
}: ActionsProps) {
  return (
    <p class="dialog-actions">
      <button type="submit" class={kind} aria-disabled={busy}>
        {busy ? busyLabel : label}
      </button>
      <button type="button" autofocus={cancelFirst} onClick={onCancel}>
        Cancel
      </button>
    </p>
  );
}

type ReasonProps = { id: string; value: string; onInput: (value: string) => void; rows?: number };

/** The optional revocation reason, kept in the audit trail. */
export function ReasonField({ id, value, onInput, rows = 3 }: ReasonProps) {
  return (
    <>
      <label for={id}>Reason</label>
      <textarea
        id={id}
        rows={rows}
        maxLength={MAX_REASON}
        value={value}
        aria-describedby={`${id}-hint`}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
      <p id={`${id}-hint`} class="hint">
        Optional, up to {MAX_REASON} characters; kept in the audit trail.
      </p>
    </>
  );
}
