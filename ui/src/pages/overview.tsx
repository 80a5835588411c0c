/** Live numbers from the gateway's own `/metrics`, scraped every few seconds, with small charts. */
import { Fragment } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { get } from '../api.js';
import { parseScrape, rates, type Rates, type Scrape } from '../metrics.js';
import { ErrorBox, message, Section, useLoad } from '../ui.js';

export const POLL_MS = 2000;
const POINTS = 90;

type Series = { t: number[]; rps: number[]; p50: (number | null)[]; p99: (number | null)[]; err: number[] };

type Status = {
  version: string;
  commit: string | null;
  uptimeSeconds: number;
  config: { hash: string; loadedAt: string };
  workers: { count: number; mode: string; pid: number };
  draining: boolean;
  logLevel: string;
  stores: Record<string, string>;
};

function Instance({ status }: { status: Status }) {
  const up = status.uptimeSeconds;
  const uptime =
    up < 120
      ? `${Math.round(up)} s`
      : up < 7200
        ? `${Math.round(up / 60)} min`
        : `${(up / 3600).toFixed(1)} h`;
  return (
    <dl class="facts">
      <dt>version</dt>
      <dd>
        {status.version}
        {status.commit !== null && ` (${status.commit})`}
      </dd>
      <dt>up</dt>
      <dd>{uptime}</dd>
      <dt>config</dt>
      <dd>
        <code>{status.config.hash.slice(0, 12)}</code> loaded{' '}
        {new Date(status.config.loadedAt).toLocaleString()}
      </dd>
      <dt>workers</dt>
      <dd>
        {status.workers.count} ({status.workers.mode})
      </dd>
      <dt>readiness</dt>
      <dd>{status.draining ? 'draining' : 'serving'}</dd>
      <dt>log level</dt>
      <dd>{status.logLevel}</dd>
      {Object.entries(status.stores).map(([name, state]) => (
        <Fragment key={name}>
          <dt>{name}</dt>
          <dd>
            <span class={`badge ${state === 'ready' ? 'good' : 'bad'}`}>{state}</span>
          </dd>
        </Fragment>
      ))}
    </dl>
  );
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
const ms = (s: number | null) => (s === null ? '—' : `${fmt(s * 1000, s < 0.01 ? 2 : 1)} ms`);

export function Overview() {
  const [now, setNow] = useState<Rates | null>(null);
  const [error, setError] = useState<string | null>(null);
  const series = useRef<Series>({ t: [], rps: [], p50: [], p99: [], err: [] });
  const [version, setVersion] = useState(0);
  const status = useLoad(() => get<Status>('/status'), [], 10_000);

  useEffect(() => {
    let prev: Scrape | null = null;
    let live = true;
    const scrape = async () => {
      try {
        const text = await get<string>('/metrics');
        if (!live) return;
        const next = parseScrape(text, Date.now());
        if (prev !== null) {
          const r = rates(prev, next);
          const s = series.current;
          s.t.push(next.at / 1000);
          s.rps.push(r.rps);
          s.p50.push(r.p50 === null ? null : r.p50 * 1000);
          s.p99.push(r.p99 === null ? null : r.p99 * 1000);
          s.err.push(r.errorRatio * 100);
          for (const a of Object.values(s)) if (a.length > POINTS) a.shift();
          setNow(r);
          setVersion((v) => v + 1);
        }
        prev = next;
        setError(null);
      } catch (err) {
        if (live) setError(message(err));
      }
    };
    void scrape();
    const timer = setInterval(() => void scrape(), POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, []);

  const s = series.current;
  return (
    <>
      <Section title="Traffic">
        <ErrorBox error={error} />
        <dl class="tiles" aria-live="polite">
          <Tile id="rps" label="requests/s" value={now === null ? '…' : fmt(now.rps)} />
          <Tile id="p50" label="p50 latency" value={now === null ? '…' : ms(now.p50)} />
          <Tile id="p99" label="p99 latency" value={now === null ? '…' : ms(now.p99)} />
          <Tile
            id="errors"
            label="errors (5xx)"
            value={now === null ? '…' : `${fmt(now.errorRatio * 100, 2)} %`}
          />
          <Tile id="rejected" label="rate-limited/s" value={now === null ? '…' : fmt(now.rejectedPerSec)} />
        </dl>
        <p class="hint">
          Computed in this browser from <code>/metrics</code> every {POLL_MS / 1000} s (this instance).
        </p>
        <div class="charts" data-points={s.t.length}>
          <Chart title="requests/s" version={version} data={[s.t, s.rps]} labels={['requests/s']} />
          <Chart title="latency (ms)" version={version} data={[s.t, s.p50, s.p99]} labels={['p50', 'p99']} />
          <Chart title="errors (%)" version={version} data={[s.t, s.err]} labels={['5xx %']} />
        </div>
      </Section>
      <Section title="Instance">
        <ErrorBox error={status.error} />
        {status.data !== null && <Instance status={status.data} />}
      </Section>
    </>
  );
}

function Tile({ id, label, value }: { id: string; label: string; value: string }) {
  return (
    <div class="tile">
      <dt>{label}</dt>
      <dd data-metric={id}>{value}</dd>
    </div>
  );
}

const COLORS = ['#2563eb', '#dc2626', '#059669'];

function Chart({
  title,
  data,
  labels,
  version,
}: {
  title: string;
  data: (number | null)[][];
  labels: string[];
  version: number;
}) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (el.current === null) return;
    plot.current = new uPlot(
      {
        width: 320,
        height: 140,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        axes: [{ size: 30 }, { size: 45 }],
        series: [
          {},
          ...labels.map((label, i) => ({ label, stroke: COLORS[i] ?? '#555', width: 2, spanGaps: true })),
        ],
      },
      data as uPlot.AlignedData,
      el.current,
    );
    return () => plot.current?.destroy();
    // built once; the data is pushed below
  }, []);
  useEffect(() => plot.current?.setData(data as uPlot.AlignedData), [version]);
  return (
    <figure class="chart">
      <figcaption>
        {title}
        {labels.length > 1 &&
          labels.map((l, i) => (
            <span key={l} class={`swatch s${i}`}>
              {l}
            </span>
          ))}
      </figcaption>
      <div ref={el} role="img" aria-label={`${title} chart`} />
    </figure>
  );
}
