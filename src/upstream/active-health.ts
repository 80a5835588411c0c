/**
 * Active health checks: a GET to `healthCheck.path` on a target every `interval`, through a
 * connection of its own (so a check never queues behind traffic, and a saturated pool is not
 * mistaken for a dead target). 2xx and 3xx pass. `unhealthyAfter` failures in a row make a
 * healthy target unhealthy; `healthyAfter` passes in a row make it healthy again. Targets start
 * healthy: a new pod that Kubernetes lists is already ready, and a gateway that starts must not
 * refuse traffic until its first checks are in.
 */
import { Client } from 'undici';
import type { HealthCheckConfig } from '../config/schema.js';
import type { UpstreamConnect } from './tls.js';

export type CheckVerdict = { healthy: boolean; passes: number; failures: number };

/** The verdict after one more check result (pure). */
export function afterCheck(config: HealthCheckConfig, v: CheckVerdict, passed: boolean): CheckVerdict {
  if (passed) {
    const passes = v.passes + 1;
    return { healthy: v.healthy || passes >= config.healthyAfter, passes, failures: 0 };
  }
  const failures = v.failures + 1;
  return { healthy: v.healthy && failures < config.unhealthyAfter, passes: 0, failures };
}

export class ActiveHealthCheck {
  private verdict: CheckVerdict = { healthy: true, passes: 0, failures: 0 };
  private timer: NodeJS.Timeout | null = null;
  private readonly client: Client;
  private stopped = false;
  lastError: string | null = null;

  constructor(
    origin: string,
    private readonly config: HealthCheckConfig,
    private readonly onChange: (healthy: boolean) => void,
    connect: UpstreamConnect = {},
  ) {
    this.client = new Client(origin, {
      connectTimeout: config.timeout,
      headersTimeout: config.timeout,
      bodyTimeout: config.timeout,
      keepAliveTimeout: Math.max(config.interval * 2, 4000),
      pipelining: 1,
      ...connect,
    });
  }

  get healthy(): boolean {
    return this.verdict.healthy;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    void this.client.destroy().catch(() => undefined);
  }

  private async run(): Promise<void> {
    const passed = await this.check();
    if (this.stopped) return;
    const before = this.verdict.healthy;
    this.verdict = afterCheck(this.config, this.verdict, passed);
    if (this.verdict.healthy !== before) this.onChange(this.verdict.healthy);
    this.timer = setTimeout(() => void this.run(), this.config.interval);
    this.timer.unref();
  }

  private async check(): Promise<boolean> {
    try {
      const res = await this.client.request({
        path: this.config.path,
        method: 'GET',
        headers: { 'user-agent': 'gatehouse-health-check' },
        signal: AbortSignal.timeout(this.config.timeout),
      });
      await res.body.dump();
      this.lastError = res.statusCode < 400 ? null : `status ${res.statusCode}`;
      return res.statusCode >= 200 && res.statusCode < 400;
    } catch (err) {
      this.lastError = (err as { code?: string }).code ?? (err as Error).message;
      return false;
    }
  }
}
