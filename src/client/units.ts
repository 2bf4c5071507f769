// Sizes as Docker's tools print them (go-units HumanSizeWithPrecision): decimal units, `precision`
// significant digits in Go's %g form. `docker images` uses 3 digits, `buildx du` and `builder prune` 4.
// In the client room so both the CLI's tables and the client's own progress lines (what a context
// upload moved) use it.

const SIZE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];

export function humanSize(bytes: number, precision = 3): string {
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < SIZE_UNITS.length - 1) {
    size /= 1000;
    i++;
  }
  return formatG(size, precision) + SIZE_UNITS[i];
}

/** Go's %.{precision}g: shortest of fixed or exponent form, trailing zeros dropped, exponent of 2+ digits. */
function formatG(x: number, precision: number): string {
  const p = x.toPrecision(precision);
  const m = /^(\d+(?:\.\d+)?)e\+?(-?\d+)$/.exec(p);
  if (m) {
    const exp = Number(m[2]);
    return `${String(Number(m[1]))}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return String(Number(p));
}
