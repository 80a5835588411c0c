/** A consumer (a key id or a JWT `sub`): usage in every tier, and "revoke sessions". */
import { useState } from 'preact/hooks';
import { call, get } from '../api.js';
import { Action, ErrorBox, message, Section } from '../ui.js';
import { UsageTable, type Usage } from './usage.js';

export function Consumers({ canWrite }: { canWrite: boolean }) {
  const [id, setId] = useState('');
  const [shown, setShown] = useState<string | null>(null);
  const [usage, setUsage] = useState<Usage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [revoked, setRevoked] = useState<string | null>(null);
  const look = (e: Event) => {
    e.preventDefault();
    const subject = id.trim();
    setShown(subject);
    setRevoked(null);
    get<Usage>(`/consumers/${encodeURIComponent(subject)}/usage`).then(
      (u) => {
        setUsage(u);
        setError(null);
      },
      (err: unknown) => {
        setUsage(null);
        setError(message(err));
      },
    );
  };
  return (
    <Section title="Consumer">
      <form class="inline" onSubmit={look} aria-label="find a consumer">
        <label>
          consumer id (key id or JWT sub)
          <input required value={id} onInput={(e) => setId(e.currentTarget.value)} />
        </label>
        <button type="submit">Show</button>
      </form>
      {shown !== null && (
        <>
          <h3>{shown}</h3>
          <ErrorBox error={error} />
          {usage !== null && <UsageTable usage={usage} />}
          {canWrite && (
            <p>
              <Action
                label="Revoke sessions"
                kind="danger"
                name={`revoke every token of ${shown}`}
                run={() =>
                  call<Record<string, unknown>>(
                    'POST',
                    `/consumers/${encodeURIComponent(shown)}/revoke-tokens`,
                  )
                }
                onDone={() => setRevoked(`Every token issued to ${shown} until now is refused.`)}
              />
            </p>
          )}
          {revoked !== null && (
            <p class="ok" role="status">
              {revoked}
            </p>
          )}
        </>
      )}
    </Section>
  );
}
