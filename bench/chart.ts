/**
 * Stacked horizontal bar charts as SVG, drawn from a benchmark's own figures (no library). The
 * serve scenario writes its figures to docs/bench/cpu-per-request.json and the charts beside
 * them; `node bench/chart.ts` redraws the charts from that file.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Bar = { label: string; parts: number[] };

const COLOURS = ['#2563eb', '#f59e0b', '#10b981', '#9333ea'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

type Chart = {
  title: string;
  unit: string;
  series: string[];
  bars: Bar[];
  /** A vertical reference line (e.g. the target), labelled. */
  mark?: { at: number; label: string };
};
export type ChartData = Chart & { file: string };
export const CHART_DATA = 'docs/bench/cpu-per-request.json';

export function stackedBars(o: Chart): string {
  const left = 300;
  const width = 860;
  const row = 26;
  const top = 56;
  const plot = width - left - 70;
  const max = Math.max(...o.bars.map((b) => b.parts.reduce((a, x) => a + x, 0)), o.mark?.at ?? 0);
  const x = (v: number) => left + (v / max) * plot;
  const height = top + o.bars.length * row + 40;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="16" y="24" font-size="15" font-weight="600">${esc(o.title)}</text>`,
    ...o.series.map(
      (s, i) =>
        `<rect x="${16 + i * 150}" y="34" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/><text x="${32 + i * 150}" y="45">${esc(s)}</text>`,
    ),
  ];
  o.bars.forEach((b, r) => {
    const y = top + r * row;
    out.push(`<text x="${left - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>`);
    let at = 0;
    b.parts.forEach((v, i) => {
      out.push(
        `<rect x="${x(at).toFixed(1)}" y="${y + 4}" width="${Math.max(0, x(at + v) - x(at)).toFixed(1)}" height="${row - 8}" fill="${COLOURS[i % COLOURS.length]}"/>`,
      );
      at += v;
    });
    out.push(`<text x="${(x(at) + 6).toFixed(1)}" y="${y + 16}">${at.toFixed(0)} ${o.unit}</text>`);
  });
  if (o.mark) {
    const mx = x(o.mark.at).toFixed(1);
    out.push(
      `<line x1="${mx}" x2="${mx}" y1="${top - 4}" y2="${top + o.bars.length * row}" stroke="#dc2626" stroke-dasharray="4 3"/>`,
      `<text x="${mx}" y="${top + o.bars.length * row + 16}" fill="#dc2626" text-anchor="middle">${esc(o.mark.label)}</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** Saves the figures and draws each chart beside them (`<file>.svg` in the same folder). */
export function writeCharts(dataFile: string, charts: ChartData[]): void {
  mkdirSync(dirname(dataFile), { recursive: true });
  writeFileSync(dataFile, `${JSON.stringify(charts, null, 2)}\n`);
  drawCharts(dataFile);
}

export function drawCharts(dataFile: string): void {
  const charts = JSON.parse(readFileSync(dataFile, 'utf8')) as ChartData[];
  for (const c of charts) writeFileSync(`${dirname(dataFile)}/${c.file}.svg`, stackedBars(c));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) drawCharts(process.argv[2] ?? CHART_DATA);
