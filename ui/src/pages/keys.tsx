/** API keys: issue (the secret shown once), list, edit, revoke, rotate with grace, usage. */
import { useState } from 'preact/hooks';
import { call, get } from '../api.js';
import { Action, ErrorBox, message, Section, useLoad, when } from '../ui.js';
import { UsageTable, type Usage } from './usage.js';

export type Key = {
  id: string;
  name: string;
  tier: string;
  roles: string[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
};
type Page = { keys: Key[]; next: string | null };

const roleList = (s: string) =>
  s
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r !== '');

export function Keys({ canWrite }: { canWrite: boolean }) {
  const [cursor, setCursor] = useState<string | null>(null);
  const [prefix, setPrefix] = useState('');
  const q = new URLSearchParams({ limit: '50' });
  if (cursor !== null) q.set('cursor', cursor);
  if (prefix !== '') q.set('namePrefix', prefix);
  const page = useLoad(() => get<Page>(`/keys?${q.toString()}`), [cursor, prefix]);
  const [issued, setIssued] = useState<{ id: string; key: string; what: string } | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  return (
    <>
      {canWrite && (
        <Section title="Issue a key">
          <CreateKey
            onCreated={(k) => {
              setIssued({ id: k.id, key: k.key, what: 'created' });
              page.reload();
            }}
          />
        </Section>
      )}
      {issued !== null && (
        <div class="secret" role="alert" aria-label="new key">
          <p>
            Key <code>{issued.id}</code> {issued.what}. Copy it now: it is not shown again.
          </p>
          <output data-testid="new-key">{issued.key}</output>
          <button type="button" onClick={() => setIssued(null)}>
            Done
          </button>
        </div>
      )}
      <Section title="Keys">
        <form class="inline" onSubmit={(e) => e.preventDefault()} aria-label="filter keys">
          <label>
            name starts with
            <input
              value={prefix}
              onInput={(e) => {
                setCursor(null);
                setPrefix(e.currentTarget.value);
              }}
            />
          </label>
        </form>
        <ErrorBox error={page.error} />
        <table>
          <thead>
            <tr>
              <th scope="col">id</th>
              <th scope="col">name</th>
              <th scope="col">tier</th>
              <th scope="col">roles</th>
              <th scope="col">status</th>
              <th scope="col">last used</th>
              <th scope="col">
                <span class="sr-only">actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {page.data?.keys.map((k) => (
              <KeyRow
                key={k.id}
                k={k}
                canWrite={canWrite}
                open={open === k.id}
                toggle={() => setOpen(open === k.id ? null : k.id)}
                changed={page.reload}
                rotated={(n) => {
                  setIssued({ id: n.id, key: n.key, what: `replaces ${k.id}` });
                  page.reload();
                }}
              />
            ))}
          </tbody>
        </table>
        <p>
          {cursor !== null && (
            <button type="button" onClick={() => setCursor(null)}>
              First page
            </button>
          )}
          {page.data?.next != null && (
            <button type="button" onClick={() => setCursor(page.data?.next ?? null)}>
              Next page
            </button>
          )}
        </p>
      </Section>
    </>
  );
}

const statusOf = (k: Key) =>
  k.revokedAt !== null
    ? 'revoked'
    : k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now()
      ? 'expired'
      : 'active';

function KeyRow({
  k,
  canWrite,
  open,
  toggle,
  changed,
  rotated,
}: {
  k: Key;
  canWrite: boolean;
  open: boolean;
  toggle: () => void;
  changed: () => void;
  rotated: (n: { id: string; key: string }) => void;
}) {
  const status = statusOf(k);
  return (
    <>
      <tr data-key={k.id}>
        <td>
          <code>{k.id}</code>
        </td>
        <td>{k.name}</td>
        <td>{k.tier}</td>
        <td>{k.roles.join(', ')}</td>
        <td>
          <span class={`badge ${status === 'active' ? 'good' : 'bad'}`} data-status>
            {status}
          </span>
          {k.expiresAt !== null && status === 'active' && <small> until {when(k.expiresAt)}</small>}
        </td>
        <td>{when(k.lastUsedAt)}</td>
        <td>
          <button type="button" aria-expanded={open} onClick={toggle} aria-label={`details of ${k.id}`}>
            {open ? 'Close' : 'Details'}
          </button>
          {canWrite && status === 'active' && (
            <Action
              label="Revoke"
              kind="danger"
              name={`revoke ${k.id}`}
              run={() => call('DELETE', `/keys/${k.id}`)}
              onDone={changed}
            />
          )}
        </td>
      </tr>
      {open && (
        <tr class="details">
          <td colSpan={7}>
            <KeyDetails
              k={k}
              canWrite={canWrite && status === 'active'}
              changed={changed}
              rotated={rotated}
            />
          </td>
        </tr>
      )}
    </>
  );
}

function KeyDetails({
  k,
  canWrite,
  changed,
  rotated,
}: {
  k: Key;
  canWrite: boolean;
  changed: () => void;
  rotated: (n: { id: string; key: string }) => void;
}) {
  const usage = useLoad(() => get<Usage>(`/keys/${k.id}/usage`), [k.id], 5000);
  const [name, setName] = useState(k.name);
  const [tier, setTier] = useState(k.tier);
  const [roles, setRoles] = useState(k.roles.join(', '));
  const [grace, setGrace] = useState('24h');
  const [error, setError] = useState<string | null>(null);
  return (
    <div class="key-details">
      <h3>Usage against the limits of its tier</h3>
      <ErrorBox error={usage.error} />
      {usage.data !== null && <UsageTable usage={usage.data} />}
      {canWrite && (
        <>
          <h3>Edit</h3>
          <form
            class="inline"
            aria-label={`edit ${k.id}`}
            onSubmit={(e) => {
              e.preventDefault();
              call('PATCH', `/keys/${k.id}`, { name, tier, roles: roleList(roles) }).then(
                () => {
                  setError(null);
                  changed();
                },
                (err: unknown) => setError(message(err)),
              );
            }}
          >
            <label>
              name
              <input value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <label>
              tier
              <input value={tier} onInput={(e) => setTier(e.currentTarget.value)} />
            </label>
            <label>
              roles
              <input
                value={roles}
                placeholder="reader, writer"
                onInput={(e) => setRoles(e.currentTarget.value)}
              />
            </label>
            <button type="submit">Save</button>
            <ErrorBox error={error} />
          </form>
          <h3>Rotate</h3>
          <div class="inline">
            <label>
              grace (the old key stays valid)
              <input value={grace} size={6} onInput={(e) => setGrace(e.currentTarget.value)} />
            </label>
            <Action
              label="Rotate"
              name={`rotate ${k.id}`}
              run={() => call<{ id: string; key: string }>('POST', `/keys/${k.id}/rotate`, { grace })}
              onDone={(r) => rotated(r as { id: string; key: string })}
            />
          </div>
        </>
      )}
    </div>
  );
}

function CreateKey({ onCreated }: { onCreated: (k: Key & { key: string }) => void }) {
  const [name, setName] = useState('');
  const [tier, setTier] = useState('');
  const [roles, setRoles] = useState('');
  const [expiresAt, setExpiresAt] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      class="inline"
      aria-label="issue a key"
      onSubmit={(e) => {
        e.preventDefault();
        const body: Record<string, unknown> = { name, tier };
        if (roles.trim() !== '') body.roles = roleList(roles);
        if (expiresAt !== '') body.expiresAt = new Date(expiresAt).toISOString();
        call<Key & { key: string }>('POST', '/keys', body).then(
          (k) => {
            setError(null);
            setName('');
            onCreated(k);
          },
          (err: unknown) => setError(message(err)),
        );
      }}
    >
      <label>
        name
        <input required value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        tier
        <input required value={tier} onInput={(e) => setTier(e.currentTarget.value)} />
      </label>
      <label>
        roles
        <input value={roles} placeholder="reader, writer" onInput={(e) => setRoles(e.currentTarget.value)} />
      </label>
      <label>
        expires
        <input type="datetime-local" value={expiresAt} onInput={(e) => setExpiresAt(e.currentTarget.value)} />
      </label>
      <button type="submit">Issue key</button>
      <ErrorBox error={error} />
    </form>
  );
}
