/**
 * The org's findings on the API Keys page (issue 20): revoked keys still tried, old keys still
 * used after a rotation, keys refused by their limits in the last 24 h, spikes, each linked to
 * its key. A disclosure whose summary counts them (warnings first): open, it lists them; closed,
 * the keys table keeps the page's only key links.
 */
import type { Client, OrgFindings } from '../api.ts';
import { RelativeTime } from '../components.tsx';
import { formatNumber } from '../format.ts';
import { useApi } from '../hooks.ts';
import { keyHref } from '../route.ts';

type Finding = OrgFindings['data'][number];

const n = (count: number, one: string, many = `${one}s`) =>
  `${formatNumber(count)} ${count === 1 ? one : many}`;

/** What a finding says after its key's name. */
export function findingText(f: Finding): string {
  switch (f.kind) {
    case 'revoked_key_used':
      return `is revoked or expired and still being tried (${n(f.count, 'denied attempt')})`;
    case 'old_key_in_use':
      return 'was replaced by a rotation and is still in use: move its callers to the new key';
    case 'limited':
      return `was refused by its own limits in the last 24 hours (${n(f.count, 'refusal')} in all)`;
    case 'spike':
      return `spikes: ${n(f.count, 'request')} in 24 hours against ${formatNumber(Math.round(f.daily_mean ?? 0))} a day before`;
  }
}

/** "2 warnings, 3 notes" or "none". */
export function findingsSummary(findings: readonly Finding[]): string {
  const warnings = findings.filter((f) => f.severity === 'warning').length;
  const notes = findings.length - warnings;
  if (findings.length === 0) return 'none';
  return [warnings > 0 && n(warnings, 'warning'), notes > 0 && n(notes, 'note')]
    .filter(Boolean)
    .join(', ');
}

type Props = { client: Client; orgId: string; generation: number; now: number };

export function OrgFindingsPanel({ client, orgId, generation, now }: Props) {
  const found = useApi((signal) => client.findings(orgId, signal), [client, orgId, generation]);
  // A missing scope is the keys table's alert already: one alert on the page, not two.
  if (found.error?.status === 403) return null;
  if (found.error) {
    return <p class="message message-info">Findings are not shown: {found.error.detail}.</p>;
  }
  const list = found.data?.data;
  if (!list) return null;
  const ordered = [...list].sort((a, b) =>
    a.severity === b.severity ? 0 : a.severity === 'warning' ? -1 : 1,
  );
  return (
    <details class="org-findings">
      <summary>
        <h2>Findings: {findingsSummary(list)}</h2>
      </summary>
      {list.length === 0 ? (
        <p class="empty">
          Nothing to look at: no revoked key tried, no old key in use, no key limited or spiking.
        </p>
      ) : (
        <ul>
          {ordered.map((f) => (
            <li
              key={`${f.kind}-${f.key.id}`}
              class={f.severity === 'warning' ? 'finding-warning' : ''}
            >
              <a href={keyHref(f.key.id)}>{f.key.name}</a> <code>{f.key.prefix}…</code>{' '}
              {findingText(f)}, {f.kind === 'spike' ? 'since' : 'last'}{' '}
              <RelativeTime iso={f.at} now={now} />.
            </li>
          ))}
        </ul>
      )}
    </details>
  );
}
