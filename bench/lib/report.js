// The results as a markdown table and as ratios against targets.
import { formatErrors, formatInt, formatMs } from './measure.js';

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

/**
 * Notes under the table: skipped systems, failed requests, warnings.
 * @param {Measurement[]} results
 * @returns {string[]}
 */
export function notes(results) {
  const out = [];
  for (const r of results) {
    if (r.skipped) out.push(`${r.name}: skipped (${r.skipped.split('\n')[0]})`);
    for (const [mode, m] of Object.entries(r.modes)) {
      if (m.errorCount) {
        out.push(`⚠ ${r.name} ${mode}: ${formatErrors(m.errors)} (summed over ${m.runs.length} runs)`);
      }
      if (m.error) out.push(`⚠ ${r.name} ${mode}: ${m.error.split('\n')[0]}`);
    }
  }
  return out;
}

/**
 * @typedef {object} RatioCheck
 * @property {string} label  e.g. 'gatehouse ÷ nginx (ka)'
 * @property {number} value  NaN when a side was not measured
 * @property {number} target  the ratio must be at least this
 * @property {boolean | null} ok  null when not measured
 */

/**
 * @param {Measurement[]} results
 * @param {{ system: string, versus: string, mode: string, target: number }[]} specs
 * @returns {RatioCheck[]}
 */
export function checkRatios(results, specs) {
  return specs.map(({ system, versus, mode, target }) => {
    const value = ratio(rpsOf(results, system, mode), rpsOf(results, versus, mode));
    return {
      label: `${system} ÷ ${versus} (${mode})`,
      value,
      target,
      ok: Number.isFinite(value) ? value >= target : null,
    };
  });
}

/**
 * @param {RatioCheck[]} checks
 * @returns {string[]}
 */
export function formatRatioChecks(checks) {
  const width = Math.max(...checks.map((c) => c.label.length));
  return checks.map((c) => {
    const verdict = c.ok === null ? 'not measured' : c.ok ? 'meets the target' : 'BELOW the target';
    return `${c.label.padEnd(width)}  ${formatRatio(c.value).padStart(5)}  (target ≥ ${c.target})  ${verdict}`;
  });
}
