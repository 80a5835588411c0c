/**
 * Real `gatehouse start` processes for the API key tests that need several instances (each its
 * own config file, ports and, through libfaketime, clock), and the measure those tests take:
 * how long after an event each instance keeps accepting a key.
 */
import { spawnCli, stopProcess, writeTempConfig, type CliProcess } from '../helpers/process.js';

export type Instance = { proc: CliProcess; url: string; adminUrl: string };

export async function startInstances(yaml: string, envs: NodeJS.ProcessEnv[]): Promise<Instance[]> {
  const started = envs.map((env) =>
    spawnCli(['start', '-c', writeTempConfig(yaml)], { LOG_LEVEL: 'info', ...env }),
  );
  return Promise.all(
    started.map(async (proc) => {
      const [, port, adminPort] = await proc.waitFor(
        /"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/,
        30_000,
      );
      return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
    }),
  ).catch(async (err: unknown) => {
    await Promise.all(started.map(stopProcess));
    throw err;
  });
}

export { stopProcess };

export async function statusWith(instance: Instance, key: string): Promise<number> {
  const res = await fetch(`${instance.url}/keyed/x`, { headers: { 'x-api-key': key } });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Polls every instance (every 25 ms, from now on) until it refuses `key` with 401, and then
 * checks it stays refused; resolves with the wall-clock instant (Date.now()) of each first 401,
 * or Infinity when an instance still accepts the key after `deadlineMs`. A status other than
 * 200 or 401 fails the measure. The test process's clock is the host's, like the database's.
 */
export async function firstRefusals(
  instances: Instance[],
  key: string,
  deadlineMs: number,
): Promise<number[]> {
  const deadline = performance.now() + deadlineMs;
  return Promise.all(
    instances.map(async (instance) => {
      for (;;) {
        const status = await statusWith(instance, key);
        if (status === 401) {
          const at = Date.now();
          for (let i = 0; i < 3; i++) {
            const again = await statusWith(instance, key);
            if (again !== 401) throw new Error(`${instance.url}: refused, then ${again}`);
          }
          return at;
        }
        if (status !== 200) throw new Error(`${instance.url}: unexpected status ${status}`);
        if (performance.now() > deadline) return Number.POSITIVE_INFINITY;
        await new Promise((r) => setTimeout(r, 25));
      }
    }),
  );
}
