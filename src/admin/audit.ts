/**
 * The audit log of the admin API: every call of a mutating endpoint (answered, refused or failed)
 * becomes one entry: who (the token's id, never the secret), what (method, path, operation,
 * target), how it ended (status, outcome) and when. Each entry is a structured log line with
 * `audit: true`, and the last `size` entries of this instance are kept in a ring buffer for
 * `GET /audit` (the console's audit view). The log lines are the durable record; the buffer is
 * per instance and lost on restart.
 */
import type { Logger } from '../observability/logger.js';

export type AuditEntry = {
  readonly time: string;
  /** the token's id; null when no valid token was presented */
  readonly tokenId: string | null;
  readonly method: string;
  readonly path: string;
  readonly operationId: string;
  /** what the call acted on (a key id, a service), when the endpoint names one */
  readonly target: string | null;
  readonly status: number;
  readonly outcome: 'ok' | 'refused' | 'failed';
  readonly requestId: string;
};

export class AuditLog {
  private readonly ring: AuditEntry[] = [];

  constructor(
    private readonly logger: () => Logger,
    private readonly size: () => number,
  ) {}

  record(entry: AuditEntry): void {
    this.ring.push(entry);
    // small (bounded by `admin.auditEntries`) and written only by admin calls: shifting is fine
    const excess = this.ring.length - Math.max(1, this.size());
    if (excess > 0) this.ring.splice(0, excess);
    try {
      // at info: documented, so that a level of warn or above is known to drop these lines
      this.logger().info({ audit: true, ...entry }, 'admin call');
    } catch {
      // a logger that cannot write must not fail a call that was already made
    }
  }

  /** The last `limit` entries, newest first. */
  last(limit: number): AuditEntry[] {
    return limit <= 0 ? [] : this.ring.slice(-limit).reverse();
  }
}
