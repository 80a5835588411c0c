/** The compiled routes in match order, and the route-match tester (`GET /routes/match`). */
import { useState } from 'preact/hooks';
import { get } from '../api.js';
import { ErrorBox, message, Section, useLoad } from '../ui.js';

type RouteView = {
  name: string;
  host: string | null;
  path: string;
  methods: string[] | null;
  service: string;
  stages: string[];
  stripPrefix: string | null;
};
type Match = {
  matched: boolean;
  route: RouteView | null;
  normalizedPath: string | null;
  host: string;
  reason: string;
  candidates: { name: string; refusedBecause: string }[];
};

export function Routes() {
  const routes = useLoad(() => get<{ routes: RouteView[] }>('/routes'));
  return (
    <>
      <Section title="Route tester">
        <Tester />
      </Section>
      <Section title="Routes in match order">
        <ErrorBox error={routes.error} />
        <table>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">name</th>
              <th scope="col">host</th>
              <th scope="col">path</th>
              <th scope="col">methods</th>
              <th scope="col">service</th>
              <th scope="col">stages</th>
            </tr>
          </thead>
          <tbody>
            {routes.data?.routes.map((r, i) => (
              <tr key={r.name}>
                <td>{i + 1}</td>
                <td>{r.name}</td>
                <td>{r.host ?? '*'}</td>
                <td>
                  <code>{r.path}</code>
                </td>
                <td>{r.methods?.join(', ') ?? 'any'}</td>
                <td>{r.service}</td>
                <td>{r.stages.join(' → ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}

function Tester() {
  const [method, setMethod] = useState('GET');
  const [host, setHost] = useState('');
  const [path, setPath] = useState('/');
  const [result, setResult] = useState<Match | null>(null);
  const [error, setError] = useState<string | null>(null);
  const test = (e: Event) => {
    e.preventDefault();
    const q = new URLSearchParams({ method, path });
    if (host !== '') q.set('host', host);
    get<Match>(`/routes/match?${q.toString()}`).then(
      (m) => {
        setResult(m);
        setError(null);
      },
      (err: unknown) => {
        setResult(null);
        setError(message(err));
      },
    );
  };
  return (
    <form class="inline" onSubmit={test} aria-label="route tester">
      <label>
        method
        <input value={method} size={7} onInput={(e) => setMethod(e.currentTarget.value)} />
      </label>
      <label>
        host
        <input value={host} placeholder="api.example.com" onInput={(e) => setHost(e.currentTarget.value)} />
      </label>
      <label>
        path
        <input value={path} size={30} onInput={(e) => setPath(e.currentTarget.value)} />
      </label>
      <button type="submit">Test</button>
      <ErrorBox error={error} />
      {result !== null && (
        <div class="result" role="status" data-testid="match-result">
          <p>
            {result.matched ? (
              <>
                matches <strong>{result.route?.name}</strong> → service {result.route?.service}
              </>
            ) : (
              <strong>no route matches</strong>
            )}
            : {result.reason}
          </p>
          {result.candidates.length > 0 && (
            <ul>
              {result.candidates.map((c) => (
                <li key={c.name}>
                  {c.name}: {c.refusedBecause}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </form>
  );
}
