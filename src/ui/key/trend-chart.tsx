/**
 * The trend of one key's window: a uPlot chart of requests (bars), 4xx and 5xx (lines) and the
 * refusals, denied and limited (dashed lines), per bucket, and the same figures as a data table,
 * newest first (the current bucket is partial and says so). The canvas has no DOM to read, so it
 * is hidden from assistive technology; the table is what screen readers (and tests) read.
 */
import 'uplot/dist/uPlot.min.css';
import uPlot from 'uplot';
import { useEffect, useRef } from 'preact/hooks';
import type { KeyUsage } from '../api.ts';
import { formatNumber } from '../format.ts';
import { HeaderRow } from './tables.tsx';
import { bucketLabel, formatLatency } from './window.ts';

/** A bucket's figures; p95 latency only where the rollups give one (a key's, not the org's). */
type Point = Omit<KeyUsage['series'][number], 'p95_latency_ms' | 'avg_latency_ms'> & {
  p95_latency_ms?: number | null;
};
type Series = Point[];
type Props = { series: Series; granularity: 'hour' | 'day'; caption: string; latency?: boolean };

const HEIGHT = 240;
const HOUR_S = 3600;
const DAY_S = 86_400;
// The same colours as the legend swatches in key.css (each ≥ 3:1 on white, as WCAG asks of
// graphics). Requests are bars on the left axis; errors and refusals are lines on their own right
// axis, or a day's 40 errors would lie flat under its 1,500 requests. Refusals are not requests
// (SPEC §11): they are dashed, so they are told from errors by more than colour.
const LINES = [
  { label: 'Requests', axis: 'left axis', stroke: '#0b57d0', fill: 'rgba(11, 87, 208, 0.35)' },
  { label: '4xx', axis: 'right axis', stroke: '#b25e00' },
  { label: '5xx', axis: 'right axis', stroke: '#c62828' },
  { label: 'Denied', axis: 'right axis', stroke: '#6a1b9a', dash: [6, 3] },
  { label: 'Limited', axis: 'right axis', stroke: '#00695c', dash: [2, 2] },
] as const;

/** Each line's figure in a bucket, in the order of LINES. */
const FIGURES = ['requests', 'errors_4xx', 'errors_5xx', 'denied', 'limited'] as const;

function chartData(series: Series): uPlot.AlignedData {
  return [
    series.map((s) => Date.parse(s.start) / 1000),
    ...FIGURES.map((f) => series.map((s) => s[f])),
  ];
}

const upFromZero = (_u: uPlot, _min: number, max: number): uPlot.Range.MinMax => [
  0,
  Math.max(1, max) * 1.1,
];
const counts = (_u: uPlot, ticks: number[]) =>
  ticks.map((t) => (Number.isInteger(t) ? formatNumber(t) : ''));

function chartOptions(width: number, granularity: 'hour' | 'day', buckets: number): uPlot.Options {
  const unit = granularity === 'hour' ? HOUR_S : DAY_S;
  // Ticks fall on bucket starts: every hour or day, or every few when they would crowd.
  const incrs =
    granularity === 'hour'
      ? [1, 2, 3, 4, 6, 12].map((n) => n * HOUR_S)
      : [1, 2, 7, 14, 28].map((n) => n * DAY_S);
  return {
    width,
    height: HEIGHT,
    // Days are UTC days: place their ticks at UTC midnight, or west of Greenwich each tick
    // would sit hours away from its bar.
    ...(granularity === 'day' && {
      tzDate: (ts: number) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    }),
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      // Each bucket is drawn at its start with its bar centred there: half a bucket of room each side.
      x: {
        time: true,
        range: (_u, min, max) => [
          min - unit / 2,
          Math.max(max, min + unit * (buckets - 1)) + unit / 2,
        ],
      },
      y: { range: upFromZero },
      errors: { range: upFromZero },
    },
    axes: [
      {
        incrs,
        // Ticks on bucket starts, counted back from the newest bucket by the step uPlot found
        // room for: its own splits follow local whole hours, which miss UTC hour buckets in
        // half-hour time zones (India, Adelaide).
        splits: (u, _axis, _min, _max, foundIncr) => {
          const starts = Array.from(u.data[0], Number);
          const step = Math.max(1, Math.round(foundIncr / unit));
          const last = starts[starts.length - 1] ?? 0;
          return starts.filter((x) => Math.round((last - x) / unit) % step === 0);
        },
        values: (_u, ticks) =>
          ticks.map((t) =>
            bucketLabel(new Date(t * 1000).toISOString(), granularity, undefined, undefined, true),
          ),
      },
      { values: counts, size: 56 },
      { scale: 'errors', side: 1, values: counts, grid: { show: false }, size: 48 },
    ],
    series: [
      {},
      {
        label: 'Requests',
        stroke: LINES[0].stroke,
        fill: LINES[0].fill,
        paths: uPlot.paths.bars?.({ size: [0.7, 64] }),
        points: { show: false },
      },
      ...LINES.slice(1).map((l) => ({
        label: l.label,
        scale: 'errors',
        stroke: l.stroke,
        width: 2,
        ...('dash' in l && { dash: [...l.dash] }),
        points: { show: buckets <= 31, size: 5 },
      })),
    ],
  };
}

function Chart({ series, granularity }: Pick<Props, 'series' | 'granularity'>) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot(
      chartOptions(el.clientWidth || 600, granularity, series.length),
      chartData(series),
      el,
    );
    // The chart follows its box's width (a resized window, a narrow screen).
    const resize = new ResizeObserver(() => {
      if (el.clientWidth > 0 && el.clientWidth !== plot.width)
        plot.setSize({ width: el.clientWidth, height: HEIGHT });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [series, granularity]);
  return <div class="chart" ref={box} aria-hidden="true" />;
}

export function TrendChart({ series, granularity, caption, latency = true }: Props) {
  const period = granularity === 'hour' ? 'Hour' : 'Day (UTC)';
  return (
    <figure class="trend">
      <figcaption>{caption}</figcaption>
      <ul class="legend" aria-hidden="true">
        {LINES.map((l, i) => (
          <li key={l.label}>
            <span class={`swatch swatch-${i}`} /> {l.label} ({l.axis})
          </li>
        ))}
      </ul>
      <Chart series={series} granularity={granularity} />
      <div class="table-scroll series-scroll" role="region" aria-label="Trend figures" tabIndex={0}>
        <table class="keys data series">
          <caption class="sr-only">{caption}</caption>
          <HeaderRow
            columns={[
              period,
              ...LINES.map((l): [string, 'num'] => [l.label, 'num']),
              ...(latency ? [['p95 latency', 'num'] as [string, 'num']] : []),
            ]}
          />
          <tbody>
            {/* Newest first: the bucket an admin looks at first is the current one. */}
            {[...series].reverse().map((s, i) => (
              <tr key={s.start}>
                <th scope="row">
                  <time dateTime={s.start}>{bucketLabel(s.start, granularity)}</time>
                  {i === 0 && <span class="muted"> (so far)</span>}
                </th>
                {FIGURES.map((f) => (
                  <td key={f} class="num">
                    {formatNumber(s[f])}
                  </td>
                ))}
                {latency && <td class="num">{formatLatency(s.p95_latency_ms ?? null)}</td>}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </figure>
  );
}
