/** The admin web console: sign-in, navigation, and the pages. */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { session, whoAmI, type Caller } from './api.js';
import { Audit } from './pages/audit.js';
import { Config } from './pages/config.js';
import { Consumers } from './pages/consumers.js';
import { Keys } from './pages/keys.js';
import { Overview } from './pages/overview.js';
import { Routes } from './pages/routes.js';
import { Services } from './pages/services.js';
import { message } from './ui.js';

const PAGES = ['overview', 'routes', 'services', 'keys', 'consumers', 'config', 'audit'] as const;
type Page = (typeof PAGES)[number];

const pageOf = (hash: string): Page => {
  const name = hash.replace(/^#\/?/, '');
  return (PAGES as readonly string[]).includes(name) ? (name as Page) : 'overview';
};

function App() {
  const [caller, setCaller] = useState<Caller | null>(null);
  const [checking, setChecking] = useState(session.token() !== null);
  const [page, setPage] = useState<Page>(pageOf(location.hash));
  useEffect(() => {
    const on = () => setPage(pageOf(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  useEffect(() => {
    if (session.token() === null) return;
    whoAmI().then(
      (c) => {
        setCaller(c);
        setChecking(false);
      },
      () => {
        session.signOut();
        setChecking(false);
      },
    );
  }, []);
  useEffect(() => {
    document.title = `${page} · Gatehouse console`;
    document.getElementById('main')?.focus();
  }, [page, caller]);
  if (checking) return <p>Signing in…</p>;
  if (caller === null) return <SignIn onSignedIn={setCaller} />;
  const canWrite = caller.role === 'admin';
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <h1>Gatehouse</h1>
        <nav aria-label="pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p}>
                <a href={`#/${p}`} aria-current={p === page ? 'page' : undefined}>
                  {p}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <p class="who">
          token <strong>{caller.id}</strong> ({canWrite ? 'admin' : 'read-only'}){' '}
          <button
            type="button"
            onClick={() => {
              session.signOut();
              setCaller(null);
            }}
          >
            Sign out
          </button>
        </p>
      </header>
      <main id="main" tabIndex={-1} data-page={page}>
        <h2 class="page-title">{page}</h2>
        {page === 'overview' && <Overview />}
        {page === 'routes' && <Routes />}
        {page === 'services' && <Services canWrite={canWrite} />}
        {page === 'keys' && <Keys canWrite={canWrite} />}
        {page === 'consumers' && <Consumers canWrite={canWrite} />}
        {page === 'config' && <Config canWrite={canWrite} />}
        {page === 'audit' && <Audit />}
      </main>
    </>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (c: Caller) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="signin">
      <h1>Gatehouse console</h1>
      <form
        aria-label="sign in"
        onSubmit={(e) => {
          e.preventDefault();
          session.signIn(token);
          whoAmI().then(onSignedIn, (err: unknown) => {
            session.signOut();
            setError(message(err));
          });
        }}
      >
        <label>
          Admin token
          <input
            type="password"
            autoComplete="off"
            required
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
          />
        </label>
        <button type="submit">Sign in</button>
        {error !== null && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">
          The token is kept in this tab only (sessionStorage) and sent as a bearer header; no cookie is set.
        </p>
      </form>
    </main>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
