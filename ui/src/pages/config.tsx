/** The effective config (redacted) and reload; a refused reload shows the file's errors. */
import { useState } from 'preact/hooks';
import { ApiError, call, get } from '../api.js';
import { Section, useLoad, ErrorBox } from '../ui.js';

type Reload = { status: 'reloaded'; restartNeeded: string[] };

export function Config({ canWrite }: { canWrite: boolean }) {
  const config = useLoad(() => get<{ hash: string; config: unknown }>('/config'));
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string; errors: string[] } | null>(null);
  const [busy, setBusy] = useState(false);
  const reload = () => {
    setBusy(true);
    call<Reload>('POST', '/reload').then(
      (r) => {
        setBusy(false);
        setOutcome({
          ok: true,
          text:
            r.restartNeeded.length === 0
              ? 'Reloaded.'
              : `Reloaded; these apply after a restart: ${r.restartNeeded.join(', ')}`,
          errors: [],
        });
        config.reload();
      },
      (err: unknown) => {
        setBusy(false);
        const errors =
          err instanceof ApiError && Array.isArray(err.body.errors) ? err.body.errors.map(String) : [];
        setOutcome({ ok: false, text: err instanceof Error ? err.message : String(err), errors });
      },
    );
  };
  return (
    <Section title="Effective config">
      {canWrite && (
        <p>
          <button type="button" onClick={reload} disabled={busy}>
            Reload from file
          </button>
        </p>
      )}
      {outcome !== null && (
        <div class={outcome.ok ? 'ok' : 'error'} role="alert" data-testid="reload-outcome">
          <p>{outcome.text}</p>
          {outcome.errors.length > 0 && (
            <ul>
              {outcome.errors.map((e) => (
                <li key={e}>
                  <code>{e}</code>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <ErrorBox error={config.error} />
      {config.data !== null && (
        <>
          <p>
            hash <code>{config.data.hash}</code> (secrets redacted)
          </p>
          <pre class="json" tabIndex={0} aria-label="effective config">
            {JSON.stringify(config.data.config, null, 2)}
          </pre>
        </>
      )}
    </Section>
  );
}
