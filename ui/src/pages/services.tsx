/** Each service's targets (health, ejection, disabled), breaker; disable/enable, breaker reset. */
import { call, get } from '../api.js';
import { Action, ErrorBox, Section, useLoad } from '../ui.js';

type Target = {
  target: string;
  healthy: boolean;
  disabled: boolean;
  inflight: number;
  activeCheck: string;
  lastCheckError: string | null;
  ejected: boolean;
  ejectedForMs: number;
  consecutiveFailures: number;
};
type Service = {
  name: string;
  balancer: string;
  panic: boolean;
  breaker: { state: string; enabled: boolean; requests: number; failures: number };
  targets: Target[];
};

/** `host:port` of a target as the API takes it (the snapshot shows its origin, with the scheme) */
const hostPort = (origin: string) => origin.replace(/^[a-z]+:\/\//, '').replace(/\/$/, '');

export function Services({ canWrite }: { canWrite: boolean }) {
  const services = useLoad(() => get<{ services: Service[] }>('/services'), [], 3000);
  return (
    <Section title="Services">
      <p class="hint">Disabling a target and resetting a breaker act on this instance only.</p>
      <ErrorBox error={services.error} />
      {services.data?.services.map((s) => (
        <article key={s.name} class="card" aria-label={`service ${s.name}`}>
          <h3>
            {s.name} <small>{s.balancer}</small>
            {s.panic && <span class="badge bad">panic: no target available</span>}
          </h3>
          <p>
            breaker:{' '}
            <span class={`badge ${s.breaker.state === 'closed' ? 'good' : 'bad'}`} data-breaker={s.name}>
              {s.breaker.enabled ? s.breaker.state : 'off'}
            </span>{' '}
            ({s.breaker.failures}/{s.breaker.requests} failed in the window)
            {canWrite && (
              <Action
                label="Reset breaker"
                name={`reset breaker of ${s.name}`}
                run={() => call('POST', `/services/${encodeURIComponent(s.name)}/breaker/reset`)}
                onDone={services.reload}
              />
            )}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">target</th>
                <th scope="col">state</th>
                <th scope="col">active check</th>
                <th scope="col">in flight</th>
                <th scope="col">failures</th>
                {canWrite && <th scope="col">rotation</th>}
              </tr>
            </thead>
            <tbody>
              {s.targets.map((t) => {
                const hp = hostPort(t.target);
                const state = t.disabled
                  ? 'disabled'
                  : t.ejected
                    ? 'ejected'
                    : t.healthy
                      ? 'healthy'
                      : 'unhealthy';
                return (
                  <tr key={t.target} data-target={hp}>
                    <td>
                      <code>{t.target}</code>
                    </td>
                    <td>
                      <span class={`badge ${state === 'healthy' ? 'good' : 'bad'}`} data-state>
                        {state}
                      </span>
                      {t.ejected && ` (${Math.ceil(t.ejectedForMs / 1000)} s)`}
                    </td>
                    <td>
                      {t.activeCheck}
                      {t.lastCheckError !== null && `: ${t.lastCheckError}`}
                    </td>
                    <td>{t.inflight}</td>
                    <td>{t.consecutiveFailures}</td>
                    {canWrite && (
                      <td>
                        <Action
                          label={t.disabled ? 'Enable' : 'Disable'}
                          name={`${t.disabled ? 'enable' : 'disable'} ${hp}`}
                          run={() =>
                            call(
                              'POST',
                              `/services/${encodeURIComponent(s.name)}/targets/${encodeURIComponent(hp)}/${t.disabled ? 'enable' : 'disable'}`,
                            )
                          }
                          onDone={services.reload}
                        />
                      </td>
                    )}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </article>
      ))}
    </Section>
  );
}
