/** What every admin handler is given besides its request: the gateway's state and the helpers. */
import type { Logger } from '../observability/logger.js';
import { problem } from '../problems/registry.js';
import type { AuditLog } from './audit.js';
import type { KeysAdmin } from './keys.js';
import { AdminProblem } from './route-table.js';
import type { AdminControl, AdminRuntimeView, AdminState } from './state.js';

export type AdminContext = {
  readonly state: AdminState;
  readonly keys: KeysAdmin;
  readonly audit: AuditLog;
  logger(): Logger;
  /** the running runtime; 404 when this admin server was given none */
  runtime(): AdminRuntimeView;
  /** applies a per-instance change to every process (see AdminControl); 404 without one */
  control(change: AdminControl): Promise<number>;
};

const unavailable = (what: string) => new AdminProblem(problem('not_found', `${what} is not available here`));

export function adminContext(
  state: AdminState,
  keys: KeysAdmin,
  audit: AuditLog,
  logger: () => Logger,
): AdminContext {
  return {
    state,
    keys,
    audit,
    logger,
    runtime: () => {
      if (state.runtime === undefined) throw unavailable('the runtime');
      return state.runtime();
    },
    control: (change) => {
      if (state.control === undefined) throw unavailable('this control');
      return state.control(change);
    },
  };
}
