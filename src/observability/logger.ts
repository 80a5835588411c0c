import { pino, type Logger } from 'pino';

export type { Logger };

/** Process logs: JSON lines on stdout. Never given a token, key or request body. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime });
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
