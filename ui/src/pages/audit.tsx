/** The last mutating admin calls this process answered (`GET /audit`). */
import { get } from '../api.js';
import { ErrorBox, Section, useLoad, when } from '../ui.js';

type Entry = {
  time: string;
  tokenId: string | null;
  method: string;
  path: string;
  operationId: string;
  target: string | null;
  status: number;
  outcome: 'ok' | 'refused' | 'failed';
  requestId: string;
};

export function Audit() {
  const audit = useLoad(() => get<{ entries: Entry[] }>('/audit?limit=200'), [], 5000);
  return (
    <Section title="Audit log">
      <p class="hint">This process's last mutating calls, newest first; the log lines are the full record.</p>
      <ErrorBox error={audit.error} />
      <table>
        <thead>
          <tr>
            <th scope="col">time</th>
            <th scope="col">token</th>
            <th scope="col">call</th>
            <th scope="col">target</th>
            <th scope="col">status</th>
          </tr>
        </thead>
        <tbody>
          {audit.data?.entries.map((e) => (
            <tr key={e.requestId}>
              <td>{when(e.time)}</td>
              <td>{e.tokenId ?? '(none)'}</td>
              <td>
                <code>
                  {e.method} {e.path}
                </code>{' '}
                <small>{e.operationId}</small>
              </td>
              <td>{e.target ?? ''}</td>
              <td>
                <span class={`badge ${e.outcome === 'ok' ? 'good' : 'bad'}`}>
                  {e.status} {e.outcome}
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}
