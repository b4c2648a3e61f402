/** The key page's findings as the admin reads them: a warning looks like one, with a link. */
import { RelativeTime } from '../components.tsx';
import { exactTime, formatNumber } from '../format.ts';
import { keyHref } from '../route.ts';
import type { Finding } from './findings.ts';

const plural = (n: number, one: string, many: string) =>
  `${formatNumber(n)} ${n === 1 ? one : many}`;

function KeyLink({ keyId, name, prefix }: { keyId: string; name: string; prefix: string }) {
  return (
    <a href={keyHref(keyId)}>
      {name} (<code>{prefix}…</code>)
    </a>
  );
}

function FindingText({ finding: f, now }: { finding: Finding; now: number }) {
  switch (f.kind) {
    case 'old-key-in-use':
      return (
        <>
          <strong>Old key still in use:</strong> {plural(f.requests, 'request', 'requests')} since
          the rotation, last <RelativeTime iso={f.lastUsedAt} now={now} />, with <KeyLink {...f} />.{' '}
          {f.stopsAt
            ? `It stops working ${exactTime(f.stopsAt)}: move its callers to this key before then.`
            : 'It has no expiry: move its callers to this key, then revoke it.'}
        </>
      );
    case 'old-key-used':
      return (
        <>
          The old key <KeyLink {...f} /> served {plural(f.requests, 'request', 'requests')} after
          the rotation, the last <RelativeTime iso={f.lastUsedAt} now={now} />; it no longer works.
        </>
      );
    case 'old-key-quiet':
      return (
        <>
          This key replaced <KeyLink {...f} /> on {exactTime(f.rotatedAt)}; the old key has not been
          used since.
        </>
      );
    case 'dead-key-tried':
      return (
        <>
          <strong>A {f.status} key is still being tried:</strong> last denied attempt{' '}
          <RelativeTime iso={f.lastDeniedAt} now={now} />,{' '}
          {plural(f.deniedCount, 'denied attempt', 'denied attempts')} in all. Whoever holds it has
          not moved to a new key; the recent events show from which IP.
        </>
      );
    case 'denied':
      return (
        <>
          {plural(f.deniedCount, 'denied attempt', 'denied attempts')} (a scope this key lacks),
          last <RelativeTime iso={f.lastDeniedAt} now={now} />.
        </>
      );
    case 'replaced':
      return (
        <>
          Rotated on {exactTime(f.rotatedAt)}: replaced by <KeyLink {...f} />.
        </>
      );
  }
}

const WARNINGS = new Set<Finding['kind']>(['old-key-in-use', 'dead-key-tried']);

export function Findings({ findings, now }: { findings: Finding[]; now: number }) {
  if (findings.length === 0) return null;
  return (
    <section class="findings" aria-labelledby="findings-title">
      <h2 id="findings-title">Findings</h2>
      <ul>
        {findings.map((f) => (
          <li key={f.kind} class={WARNINGS.has(f.kind) ? 'finding finding-warning' : 'finding'}>
            {WARNINGS.has(f.kind) && (
              <span class="finding-icon" aria-hidden="true">
                !
              </span>
            )}
            <p>
              <FindingText finding={f} now={now} />
            </p>
          </li>
        ))}
      </ul>
    </section>
  );
}
