// The side-by-side table of run.js and the targets read from it (issue 16, item 3): pure functions
// of the measured rows, so that they can be tested without a benchmark.
import { formatInt, formatMs, median } from './measure.js';

/**
 * One measured run of one row.
 * @typedef {object} RunFigures
 * @property {number} rps
 * @property {number} p50Ms
 * @property {number} p99Ms
 * @property {number} cpuUs  CPU microseconds per request of the system under test
 * @property {number} requests
 * @property {number} errors  socket errors + non-2xx answers
 */

/**
 * @typedef {object} Row
 * @property {string} key  command-line name
 * @property {string} label
 * @property {string} [group]  'reference' | 'peer' | 'gatehouse' | …
 * @property {string} [reference]  key of the row its "vs nginx" ratio uses (default 'nginx')
 * @property {string} [note]  shown under the table
 * @property {string} [skipped]  why it was not measured
 * @property {RunFigures[]} runs
 */

/**
 * @typedef {object} Summary
 * @property {number} rps
 * @property {number} p50Ms
 * @property {number} p99Ms
 * @property {number} cpuUs
 * @property {number} errors  summed over the runs
 * @property {number} requests  summed over the runs
 */

/**
 * Medians over a row's runs (errors and requests summed).
 * @param {RunFigures[]} runs
 * @returns {Summary}
 */
export function summarize(runs) {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    cpuUs: median(runs.map((r) => r.cpuUs)),
    errors: runs.reduce((s, r) => s + (Number.isFinite(r.errors) ? r.errors : 0), 0),
    requests: runs.reduce((s, r) => s + (Number.isFinite(r.requests) ? r.requests : 0), 0),
  };
}

/**
 * Efficiency of `cpuUs` against a reference: reference CPU per request ÷ this one (1.00: as cheap;
 * 0.50: twice the CPU per request). NaN when either is missing.
 * @param {number | undefined} referenceCpuUs
 * @param {number | undefined} cpuUs
 */
export function efficiency(referenceCpuUs, cpuUs) {
  return referenceCpuUs !== undefined &&
    cpuUs !== undefined &&
    Number.isFinite(referenceCpuUs) &&
    Number.isFinite(cpuUs) &&
    cpuUs > 0
    ? referenceCpuUs / cpuUs
    : Number.NaN;
}

/**
 * a ÷ b for requests/s; NaN when either is missing.
 * @param {number | undefined} a
 * @param {number | undefined} b
 */
export function rpsRatio(a, b) {
  return a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0
    ? a / b
    : Number.NaN;
}

/** @param {number} n */
export function formatRatio(n) {
  return Number.isFinite(n) ? n.toFixed(2) : '—';
}

/** @param {number} n */
function formatCpu(n) {
  return Number.isFinite(n) ? n.toFixed(1) : '—';
}

/**
 * @param {Row[]} rows
 * @returns {Map<string, Summary>}
 */
export function summaries(rows) {
  return new Map(rows.filter((r) => !r.skipped && r.runs.length).map((r) => [r.key, summarize(r.runs)]));
}

/**
 * The markdown table: requests/s, p50, p99, CPU µs per request, then the ratios to `direct` and to
 * nginx (the row's `reference`), on CPU per request first and requests/s second, then errors.
 * @param {Row[]} rows
 * @returns {string}
 */
export function markdownTable(rows) {
  const s = summaries(rows);
  const direct = s.get('direct');
  const lines = [
    '| system | rps | p50 ms | p99 ms | CPU µs/req | CPU vs direct | CPU vs nginx | rps vs direct | rps vs nginx | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const sum = s.get(row.key);
    if (!sum) {
      lines.push(`| ${row.label} | skipped | | | | | | | | |`);
      continue;
    }
    const ref = s.get(row.reference ?? 'nginx');
    const refMark = row.reference && row.reference !== 'nginx' ? ` (${row.reference})` : '';
    const cells = [
      `${row.label}${sum.errors ? ' ⚠' : ''}`,
      formatInt(sum.rps),
      formatMs(sum.p50Ms),
      formatMs(sum.p99Ms),
      formatCpu(sum.cpuUs),
      formatRatio(efficiency(direct?.cpuUs, sum.cpuUs)),
      `${formatRatio(efficiency(ref?.cpuUs, sum.cpuUs))}${refMark}`,
      formatRatio(rpsRatio(sum.rps, direct?.rps)),
      `${formatRatio(rpsRatio(sum.rps, ref?.rps))}${refMark}`,
      String(sum.errors),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * @typedef {object} TargetCheck
 * @property {string} label
 * @property {number} cpuValue  the ratio on CPU per request (efficiency), NaN when not measured
 * @property {number} rpsValue  the same ratio on requests/s
 * @property {number} target  both must be at least this
 * @property {boolean | null} met  decided on CPU per request; null when not measured
 * @property {string} detail  the figures it comes from
 */

/**
 * The Node peer with the lowest CPU per request (and the one with the highest requests/s).
 * @param {Map<string, Summary>} s
 * @param {string[]} peers
 */
export function fastestPeer(s, peers) {
  const measured = peers.filter((k) => Number.isFinite(s.get(k)?.cpuUs));
  if (!measured.length) return null;
  const byCpu = measured.reduce((a, b) =>
    /** @type {Summary} */ (s.get(b)).cpuUs < /** @type {Summary} */ (s.get(a)).cpuUs ? b : a,
  );
  const byRps = measured.reduce((a, b) =>
    /** @type {Summary} */ (s.get(b)).rps > /** @type {Summary} */ (s.get(a)).rps ? b : a,
  );
  return { byCpu, byRps };
}

/**
 * The targets of issue 16 item 3 that come from the table: Gatehouse plain ≥ 45 % of nginx's
 * efficiency and ≥ 1.6 × the fastest Node peer's; the full pipeline ≥ 33 % of nginx's plain-proxy
 * efficiency and ≥ 1.2 × the fastest Node peer with nothing on.
 * @param {Row[]} rows
 * @param {{ plain: string, full: string, nginx: string, peers: string[] }} keys
 * @returns {TargetCheck[]}
 */
export function checkTargets(rows, { plain, full, nginx, peers }) {
  const s = summaries(rows);
  const fastest = fastestPeer(s, peers);
  const n = s.get(nginx);
  /** @type {TargetCheck[]} */
  const checks = [];
  /**
   * @param {string} label
   * @param {string} key
   * @param {Summary | undefined} ref
   * @param {string} refName
   * @param {Summary | undefined} refRps  the reference for the requests/s ratio
   * @param {number} target
   */
  const add = (label, key, ref, refName, refRps, target) => {
    const sut = s.get(key);
    const cpuValue = efficiency(ref?.cpuUs, sut?.cpuUs);
    const rpsValue = rpsRatio(sut?.rps, refRps?.rps);
    checks.push({
      label,
      cpuValue,
      rpsValue,
      target,
      met: Number.isFinite(cpuValue) ? cpuValue >= target : null,
      detail:
        sut && ref
          ? `${formatCpu(ref.cpuUs)} µs (${refName}) ÷ ${formatCpu(sut.cpuUs)} µs; ` +
            `rps ${formatInt(sut.rps)} vs ${formatInt(refRps?.rps ?? Number.NaN)}`
          : 'not measured',
    });
  };
  const peerCpu = fastest ? s.get(fastest.byCpu) : undefined;
  const peerRps = fastest ? s.get(fastest.byRps) : undefined;
  add('plain ≥ 45 % of nginx efficiency', plain, n, nginx, n, 0.45);
  add('plain ≥ 1.6 × fastest Node peer', plain, peerCpu, fastest?.byCpu ?? 'peer', peerRps, 1.6);
  add('full pipeline ≥ 33 % of nginx plain efficiency', full, n, nginx, n, 0.33);
  add(
    'full pipeline ≥ 1.2 × fastest Node peer (nothing on)',
    full,
    peerCpu,
    fastest?.byCpu ?? 'peer',
    peerRps,
    1.2,
  );
  return checks;
}

/**
 * The p99 added latency target: Gatehouse's p99 minus direct's at the same fixed rate, under 1 ms.
 * @param {{ rate: number, directP99Ms: number, gatehouseP99Ms: number }} m
 * @returns {TargetCheck}
 */
export function checkAddedLatency({ rate, directP99Ms, gatehouseP99Ms }) {
  const added = gatehouseP99Ms - directP99Ms;
  const ok = Number.isFinite(added);
  return {
    label: 'p99 added latency at half of max rps < 1 ms',
    cpuValue: added,
    rpsValue: Number.NaN,
    target: 1,
    met: ok ? added < 1 : null,
    detail: ok
      ? `${formatMs(gatehouseP99Ms)} ms − ${formatMs(directP99Ms)} ms (direct) at ${formatInt(rate)} req/s, open loop`
      : 'not measured',
  };
}

/**
 * One line per target: met / MISSED, the figure on CPU per request, the one on requests/s.
 * @param {TargetCheck[]} checks
 * @returns {string[]}
 */
export function formatTargets(checks) {
  return checks.map((c) => {
    const verdict = c.met === null ? 'not measured' : c.met ? 'met' : 'MISSED';
    if (c.label.startsWith('p99')) {
      const added = Number.isFinite(c.cpuValue)
        ? `${c.cpuValue >= 0 ? '+' : ''}${formatMs(c.cpuValue)} ms`
        : '—';
      return `${verdict}: ${c.label}: ${added} (${c.detail})`;
    }
    const rpsVerdict = Number.isFinite(c.rpsValue) ? (c.rpsValue >= c.target ? 'met' : 'missed') : '—';
    return (
      `${verdict}: ${c.label}: ${formatRatio(c.cpuValue)} on CPU per request (${c.detail}); ` +
      `${formatRatio(c.rpsValue)} on rps (${rpsVerdict})`
    );
  });
}

/**
 * Replaces the text between `start` and `end` markers in `doc` (appends the section when absent).
 * @param {string} doc
 * @param {string} section  the new text between the markers
 * @param {{ start: string, end: string }} markers
 * @returns {string}
 */
export function replaceSection(doc, section, { start, end }) {
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  const block = `${start}\n${section.trim()}\n${end}`;
  if (a < 0 || b < a) return `${doc.replace(/\s*$/, '')}\n\n${block}\n`;
  return `${doc.slice(0, a)}${block}${doc.slice(b + end.length)}`;
}
