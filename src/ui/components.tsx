/** Small pieces every page uses: messages, times, the focused page heading. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import type { ApiError } from './api.ts';
import { exactTime, lastUsedCell, NEVER, shortDate } from './format.ts';
import { nextPage, previousPage, type PagedView } from './keys/usage-query.ts';

/** A failed call: the problem+json title and detail, announced at once (role="alert"). */
export function ProblemMessage({ error }: { error: ApiError }) {
  return (
    <div class="message message-error" role="alert">
      <p class="message-title">{error.title}</p>
      {error.detail && <p>{error.detail}</p>}
      {error.errors.length > 0 && (
        <ul>
          {error.errors.map((e) => (
            <li key={e.path}>
              {e.path ? `${e.path}: ` : ''}
              {e.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <p class="loading" role="status">
      {label}
    </p>
  );
}

/** "2 hours ago" with the exact instant in `datetime` and, on hover, in `title`; "—" for never. */
export function RelativeTime({ iso, now }: { iso: string | null; now: number }) {
  const cell = lastUsedCell(iso, now);
  if (cell.kind === 'never') return <span class="never">{cell.text}</span>;
  return (
    <time dateTime={cell.datetime} title={cell.title}>
      {cell.text}
    </time>
  );
}

/** A day ("Dec 1, 2026"), exact time on hover. */
export function DateOnly({ iso }: { iso: string | null }) {
  if (iso === null) return <span class="never">{NEVER}</span>;
  return (
    <time dateTime={iso} title={exactTime(iso)}>
      {shortDate(iso)}
    </time>
  );
}

/**
 * The page's h1, focused when the page appears: after sign-in or a link, a screen reader starts
 * at the new page instead of on a button that no longer exists.
 */
export function PageHeading({ children }: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}

const STATUS_LABELS: Record<string, string> = {
  active: 'Active',
  expired: 'Expired',
  revoked: 'Revoked',
};

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{STATUS_LABELS[status] ?? status}</span>;
}

type PagerProps<V extends PagedView<{ cursor: string | null }>> = {
  view: V;
  setView: (update: (view: V) => V) => void;
  nextCursor: string | null;
};

/** Cursor paging: the API gives the next cursor; the view keeps the ones before (a stack). */
export function Pager<V extends PagedView<{ cursor: string | null }>>({
  view,
  setView,
  nextCursor,
}: PagerProps<V>) {
  const hasPrevious = view.previous.length > 0;
  if (!hasPrevious && !nextCursor) return null;
  return (
    <nav class="pager" aria-label="Pages">
      {/* aria-disabled, not disabled: a button disabled under the keyboard drops the focus. */}
      <button
        type="button"
        aria-disabled={!hasPrevious}
        onClick={() => hasPrevious && setView(previousPage)}
      >
        Previous page
      </button>
      <span class="muted">Page {view.previous.length + 1}</span>
      <button
        type="button"
        aria-disabled={!nextCursor}
        onClick={() => nextCursor && setView((v) => nextPage(v, nextCursor))}
      >
        Next page
      </button>
    </nav>
  );
}
