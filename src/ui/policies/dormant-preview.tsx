/** What the dormant-key policy did last and will do next (the saved policy's preview). */
import type { DormantPolicy, DormantPreview } from '../api.ts';
import { RelativeTime } from '../components.tsx';
import { exactTime, formatNumber } from '../format.ts';
import { keyHref } from '../route.ts';

const plural = (n: number, one: string, many = `${one}s`) =>
  `${formatNumber(n)} ${n === 1 ? one : many}`;

/** "Revoked 2 keys, spared 1", "Notified about 1 key", "Skipped: …", "Never run". */
export function lastRunText(run: DormantPolicy['last_run']): string {
  if (!run) return 'The policy has not run yet.';
  if (run.skipped) return `Skipped: ${run.skipped}.`;
  const did =
    run.acted === 0
      ? 'Acted on no key'
      : run.action === 'revoke'
        ? `Revoked ${plural(run.acted, 'key')}`
        : `Notified about ${plural(run.acted, 'key')}`;
  const spared = run.spared > 0 ? `, spared ${formatNumber(run.spared)}` : '';
  return `${did}${spared}${run.downgraded ? ` (only notified: ${run.downgraded})` : ''}.`;
}

export function LastRun({ run, now }: { run: DormantPolicy['last_run']; now: number }) {
  return (
    <p class="last-run">
      <strong>Last run</strong>
      {run && (
        <>
          {' '}
          <RelativeTime iso={run.at} now={now} />
        </>
      )}
      : {lastRunText(run)} Each key acted on is in the <a href="#/audit">audit trail</a>.
    </p>
  );
}

export function PreviewPanel({ preview, now }: { preview: DormantPreview; now: number }) {
  const { keys, spared, action } = preview;
  if (!preview.policy.enabled) {
    return <p class="muted">The policy is off: the daily run acts on no key.</p>;
  }
  const verb = action === 'revoke' ? 'would revoke' : 'would notify about';
  return (
    <div class="preview">
      <p>
        A run now {verb} {plural(keys.length, 'key')}.
        {preview.next_run_at && (
          <>
            {' '}
            The next run is at {exactTime(preview.next_run_at)}: a key used before then is spared,
            one that turns dormant before then is acted on too.
          </>
        )}
      </p>
      {preview.downgraded && (
        <p class="message message-info">Only notifies: {preview.downgraded}.</p>
      )}
      {keys.length > 0 && (
        <table aria-label="Keys a run now acts on">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Environment</th>
              <th scope="col">Last used</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k.key_id}>
                <td>
                  <a href={keyHref(k.key_id)}>{k.name}</a> <code>{k.prefix}…</code>
                </td>
                <td>{k.environment}</td>
                <td>
                  <RelativeTime iso={k.last_used_at} now={now} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {spared.length > 0 && (
        <>
          <p>Left alone, with a notice instead:</p>
          <ul>
            {spared.map((k) => (
              <li key={k.key_id}>
                <a href={keyHref(k.key_id)}>{k.name}</a>: {k.detail}
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
