/** Pure text formatting of CLI output. */

/** Columns separated by two spaces, each as wide as its widest cell; no trailing blanks. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [headers, ...rows]
    .map((cells) =>
      cells
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** ISO-8601 UTC to the second; `none` for a missing time. */
export const isoSeconds = (d: Date | null, none = 'never'): string =>
  d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : none;

/** JSON times: ISO-8601 UTC, or null. */
export const isoOrNull = (d: Date | null): string | null => (d ? d.toISOString() : null);

/** A day when the time is midnight UTC (month bounds), else the full time. */
export const dayOrTime = (d: Date | null): string =>
  d === null ? '?' : d.getTime() % 86_400_000 === 0 ? d.toISOString().slice(0, 10) : isoSeconds(d);

/** Long names are cut in tables (--json has them whole). */
export const clip = (text: string, max = 40): string =>
  text.length > max ? `${text.slice(0, max - 1)}…` : text;

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1024-based sizes: `8.0 KiB`, `1.5 GiB`; whole bytes below 1 KiB. */
export function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** Thousands separated with commas (locale-independent). */
export const count = (n: number): string => String(Math.round(n)).replace(/\B(?=(\d{3})+$)/g, ',');
