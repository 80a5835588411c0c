/** Starts a real gateway in-process from YAML text, on free ports. */
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { Gateway } from '../../src/server/gateway.js';

export function configFrom(yaml: string, env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const result = loadConfigText(yaml, 'test.yaml', { env });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.config;
}

/** `listen` and `admin` are added on 127.0.0.1 port 0 unless the YAML sets them. */
export async function startGateway(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<TestGateway> {
  const full =
    (/^listen:/m.test(yaml) ? '' : 'listen: { host: 127.0.0.1, port: 0 }\n') +
    (/^admin:/m.test(yaml) ? '' : 'admin: { host: 127.0.0.1, port: 0 }\n') +
    yaml;
  const gateway = await Gateway.start(configFrom(full, env));
  return new TestGateway(gateway);
}

export class TestGateway {
  constructor(readonly gateway: Gateway) {}
  get url(): string {
    return `http://127.0.0.1:${this.gateway.port}`;
  }
  get adminUrl(): string {
    return `http://127.0.0.1:${this.gateway.adminPort}`;
  }
  /** drains with no accept grace (whatever the environment: `auto` is 5 s in a Kubernetes pod) */
  close(drainTimeout = 1000): Promise<void> {
    return this.gateway.shutdown(drainTimeout, 0);
  }
}
