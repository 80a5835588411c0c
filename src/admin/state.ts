/**
 * What the admin API is handed by the gateway that hosts it (the admin layer knows no server):
 * readiness, reload, the running runtime's parts it shows and steers, and the per-instance
 * controls. Every endpoint gets this through its context.
 */
import type { GatewayConfig } from '../config/schema.js';
import type { ConfigProblem } from '../config/problems.js';
import type { Logger } from '../observability/logger.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import type { Router } from '../router/router.js';
import type { CompiledRoute } from '../stages/stage.js';
import type { Service } from '../upstream/service.js';
import type { KeysAdmin } from './keys.js';
import type { AdminTokenSettings } from './tokens.js';
import type { TokenRevocations } from '../auth/jwt/revocation.js';

/** What a reload reports (the gateway's reload result is one). */
export type AdminReloadResult =
  | { readonly ok: true; readonly restartNeeded: readonly string[] }
  | { readonly ok: false; readonly reason: 'invalid_config'; readonly problems: readonly ConfigProblem[] }
  | { readonly ok: false; readonly reason: 'reload_failed'; readonly detail: string };

/** The parts of the running runtime the admin API reads (the server's Runtime is one). */
export type AdminRuntimeView = {
  readonly config: GatewayConfig;
  readonly router: Router<CompiledRoute>;
  /** every compiled route, in the config's order */
  readonly routes: readonly CompiledRoute[];
  readonly services: ReadonlyMap<string, Service>;
  readonly rateLimiter: RateLimiter | null;
};

/** How the process runs: for `GET /status`. */
export type AdminProcessInfo = {
  readonly version: string;
  /** the commit the build was made from, when the build recorded it */
  readonly commit: string | null;
  /** when this process started (epoch ms) */
  readonly startedAt: number;
  /** when the running config was loaded (epoch ms) */
  readonly configLoadedAt: number;
  /** processes serving the proxy port, and this one's place among them */
  readonly workers: { readonly count: number; readonly mode: 'single' | 'cluster'; readonly pid: number };
};

/**
 * A change to this instance's state that every process of it must get: with `workers`, the
 * admin port is shared and any worker may answer, so the gateway hands these to the primary,
 * which applies them to each worker. Resolves with the number of processes that applied it.
 */
export type AdminControl =
  | { readonly kind: 'logLevel'; readonly level: string }
  | { readonly kind: 'drain'; readonly on: boolean }
  | { readonly kind: 'target'; readonly service: string; readonly target: string; readonly enabled: boolean }
  | { readonly kind: 'breakerReset'; readonly service: string };

export type AdminRevocations = {
  /** null: `auth.jwt.revocation` is not configured, or no route uses JWT */
  list(): TokenRevocations | null;
  /** counts a revocation made through this instance */
  revoked(kind: 'jti' | 'subject'): void;
};

export type AdminState = {
  /** the admin tokens of the running config */
  tokens(): AdminTokenSettings;
  draining(): boolean;
  /** named readiness checks: true = ok, false = not ready, 'degraded' = ready, partly working */
  checks(): Record<string, boolean | 'degraded'>;
  /** the Prometheus text exposition */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** re-reads the config file; null when the gateway was not started from a file */
  reload: (() => Promise<AdminReloadResult>) | null;
  /** what `GET /services` shows: each service's targets, health and breaker */
  services(): unknown[];
  /** the `/keys` endpoints (src/admin/keys.ts) */
  keys?: KeysAdmin;
  /** the JWT denylist of the running config (endpoints/revocation.ts) */
  revocations?: AdminRevocations;
  /** a handler threw or its promise rejected (the request got a 500): to count and log */
  handlerFailed(err: unknown, requestId: string): void;
  /** the running runtime (absent: the endpoints that read it answer 404) */
  runtime?: () => AdminRuntimeView;
  process?: () => AdminProcessInfo;
  logger?: () => Logger;
  /** `admin.auditEntries`: how many audit entries `GET /audit` keeps (default 1000) */
  auditEntries?: () => number;
  /** `admin.ui`: whether the web console is served at `/ui` */
  ui?: () => boolean;
  /** applies a per-instance change to every process of this instance (see AdminControl) */
  control?: (change: AdminControl) => Promise<number>;
};
