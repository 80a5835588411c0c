/**
 * Watching a gateway from a test: leak checks (open sockets and timers before and after a
 * gateway's life), polling, who answered a series of requests, and reading what the admin port
 * shows (`/services`, `/metrics`).
 *
 * Leaks are counted with `process.getActiveResourcesInfo()`, which lists what keeps the event
 * loop alive: ref'd timers and open handles. A count that stays above its value from before the
 * test once everything was closed is a socket or timer the gateway forgot.
 */
import { expect } from 'vitest';
import type { TestGateway } from './gateway.js';
import { request, type RequestOptions } from './http-client.js';

/** The resource kinds a leak check compares. */
export const LEAK_KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'] as const;
export type LeakKind = (typeof LEAK_KINDS)[number];
export type ResourceCounts = Record<LeakKind, number>;

export function resourceCounts(): ResourceCounts {
  const counts: ResourceCounts = { TCPSocketWrap: 0, TCPServerWrap: 0, Timeout: 0 };
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind in counts) counts[kind as LeakKind]++;
  }
  return counts;
}

/**
 * The counts to compare against later: the smallest of samples taken over ~160 ms. The test
 * runner keeps a timer of its own for ~100 ms after each test starts (its throttled progress
 * report); counted in the baseline, it would hide one leaked timer.
 */
export async function baseline(): Promise<ResourceCounts> {
  const min = resourceCounts();
  for (let i = 0; i < 8; i++) {
    await sleep(20);
    const now = resourceCounts();
    for (const kind of LEAK_KINDS) min[kind] = Math.min(min[kind], now[kind]);
  }
  return min;
}

/**
 * Waits (up to `timeoutMs`) until no kind counts more than in `before`: a socket being
 * destroyed or a timer being cleared can take a few ticks after the close promises resolve.
 * Fails with both snapshots when something is left over.
 */
export async function expectNoLeaks(before: ResourceCounts, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let now = resourceCounts();
  while (LEAK_KINDS.some((k) => now[k] > before[k]) && Date.now() < deadline) {
    await sleep(20);
    now = resourceCounts();
  }
  for (const kind of LEAK_KINDS) {
    expect(
      now[kind],
      `${kind} left open: before ${JSON.stringify(before)}, after ${JSON.stringify(now)}`,
    ).toBeLessThanOrEqual(before[kind]);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 20 ms until it holds; fails after `timeoutMs` saying what was awaited. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Polls the gateway's open client connections on the proxy port until there are none. */
export async function expectNoClientConnections(gw: TestGateway, timeoutMs = 2000): Promise<void> {
  let n = -1;
  const deadline = Date.now() + timeoutMs;
  while ((n = await gw.gateway.connectionCount()) > 0 && Date.now() < deadline) await sleep(20);
  expect(n, 'client connections still open on the proxy port').toBe(0);
}

/** What `GET /services` shows of one target. */
export type TargetView = {
  target: string;
  healthy: boolean;
  inflight: number;
  activeCheck: 'off' | 'passing' | 'failing';
  lastCheckError: string | null;
  ejected: boolean;
  ejectedForMs: number;
  consecutiveFailures: number;
};

/** What `GET /services` shows of one service. */
export type ServiceView = {
  name: string;
  balancer: string;
  discovery: { dns: string } | { static: true };
  breaker: { state: string; enabled: boolean; requests: number; failures: number; retryAfterMs: number };
  panic: boolean;
  targets: TargetView[];
};

/** One service as `GET /services` on the admin port shows it (fails if it is not listed). */
export async function serviceView(gw: TestGateway, name: string): Promise<ServiceView> {
  const reply = await request(`${gw.adminUrl}/services`);
  expect(reply.status).toBe(200);
  expect(reply.headers['content-type']).toBe('application/json');
  const { services } = JSON.parse(reply.body.toString()) as { services: ServiceView[] };
  const found = services.find((s) => s.name === name);
  if (found === undefined) throw new Error(`service ${name} not in GET /services`);
  return found;
}

/** The Prometheus text of the admin port's `/metrics`. */
export async function scrape(gw: TestGateway): Promise<string> {
  const reply = await request(`${gw.adminUrl}/metrics`);
  expect(reply.status).toBe(200);
  return reply.body.toString();
}

/**
 * The value of the sample of `name` whose labels include all of `labels` (any order), from a
 * Prometheus text exposition; 0 when there is no such sample (a counter never incremented).
 */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const found = new Map<string, string>();
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      found.set(pair[1] as string, pair[2] as string);
    }
    if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) return Number(m[3]);
  }
  return 0;
}

/** Scrapes and reads one sample (see `metricValue`). */
export async function metric(
  gw: TestGateway,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return metricValue(await scrape(gw), name, labels);
}

/** `n` sequential requests to `url`: each answer's body, or `status N` when not 200. */
export async function answers(url: string, n: number, options: RequestOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(url, options);
    out.push(r.status === 200 ? r.body.toString() : `status ${r.status}`);
  }
  return out;
}

/** How often each value occurs. */
export function tally(list: readonly string[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const x of list) t[x] = (t[x] ?? 0) + 1;
  return t;
}
