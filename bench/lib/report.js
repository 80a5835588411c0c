// The results of the single-stage runners (auth.js, ratelimit.js) as a markdown table, and ratios.
import { formatInt, formatMs } from './measure.js';

/** @typedef {import('./measure.js').Measurement} Measurement */

/**
 * a ÷ b, NaN when either is missing.
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
export function ratio(a, b) {
  return a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0
    ? a / b
    : Number.NaN;
}

/**
 * @param {number} n
 */
function formatRatio(n) {
  return Number.isFinite(n) ? n.toFixed(2) : '—';
}

/**
 * Median requests/s of one system in one mode.
 * @param {Measurement[]} results
 * @param {string} name
 * @param {string} mode
 * @returns {number | undefined}
 */
export function rpsOf(results, name, mode) {
  return results.find((r) => r.name === name)?.modes[mode]?.median.rps;
}

/**
 * The results table: system, ka rps, p50 ms, p99 ms, ÷ baseline, close rps, ÷ baseline.
 * A row whose requests failed is marked ⚠; a skipped system is listed as such.
 * @param {Measurement[]} results
 * @param {{ baseline?: string }} [opts]
 * @returns {string}
 */
export function markdownTable(results, { baseline = 'nginx' } = {}) {
  const lines = [
    `| system | ka rps | p50 ms | p99 ms | ÷ ${baseline} | close rps | ÷ ${baseline} |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    if (r.skipped) {
      lines.push(`| ${r.name} | skipped | | | | | |`);
      continue;
    }
    const ka = r.modes.ka;
    const close = r.modes.close;
    const flagged = Object.values(r.modes).some((m) => m.flagged);
    const cells = [
      `${r.name}${flagged ? ' ⚠' : ''}`,
      formatInt(ka?.median.rps ?? Number.NaN),
      formatMs(ka?.median.p50Ms ?? Number.NaN),
      formatMs(ka?.median.p99Ms ?? Number.NaN),
      formatRatio(ratio(ka?.median.rps, rpsOf(results, baseline, 'ka'))),
      close ? formatInt(close.median.rps) : '—',
      close ? formatRatio(ratio(close.median.rps, rpsOf(results, baseline, 'close'))) : '—',
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
