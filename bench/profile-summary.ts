/**
 * `node bench/profile-summary.ts FILE.cpuprofile…`: the top functions of a V8 CPU profile by self
 * and by inclusive samples (idle excluded). PROF_TOP sets how many (35).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Node = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};
export type Profile = { nodes: Node[]; samples: number[] };

/** Top functions by self and by inclusive samples. */
export function summarize(profile: Profile, top = Number(process.env.PROF_TOP ?? 35)): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: Node) =>
    `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*node_modules\//, '~/').replace(/^file:\/\/.*\/(src|bench)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let busy = 0;
  for (const id of profile.samples) {
    const n = byId.get(id);
    if (!n) continue;
    const name = label(n);
    if (n.callFrame.functionName === '(idle)') continue;
    busy += 1;
    self.set(name, (self.get(name) ?? 0) + 1);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur) as Node);
      if (!seen.has(l)) incl.set(l, (incl.get(l) ?? 0) + 1);
      seen.add(l);
    }
  }
  const pct = (v: number) => `${((100 * v) / busy).toFixed(1).padStart(5)} %`;
  const list = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `${pct(v)}  ${k}`);
  return [`busy samples: ${busy}`, '-- self', ...list(self), '-- inclusive', ...list(incl)];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const file of process.argv.slice(2)) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    process.stdout.write(`${file}\n${summarize(profile).join('\n')}\n`);
  }
}
