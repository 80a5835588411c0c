/** Small building blocks shared by the pages. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.js';

export type Load<T> = { data: T | null; error: string | null; reload: () => void };

/** Loads `fetcher()` now, on `reload()`, and every `everyMs` when given. */
export function useLoad<T>(fetcher: () => Promise<T>, deps: unknown[] = [], everyMs?: number): Load<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    fetcher().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(null);
      },
      (err: unknown) => live && setError(message(err)),
    );
    return () => {
      live = false;
    };
  }, [tick, ...deps]);
  useEffect(() => {
    if (everyMs === undefined) return;
    const t = setInterval(reload, everyMs);
    return () => clearInterval(t);
  }, [everyMs, reload]);
  return { data, error, reload };
}

export const message = (err: unknown): string =>
  err instanceof ApiError || err instanceof Error ? err.message : String(err);

export function ErrorBox({ error }: { error: string | null }) {
  if (error === null) return null;
  return (
    <p class="error" role="alert">
      {error}
    </p>
  );
}

export function Section({ title, children }: { title: string; children: ComponentChildren }) {
  return (
    <section aria-label={title}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

/** A button that runs an async action, shows that it runs, and reports its failure. */
export function Action({
  label,
  run,
  onDone,
  disabled,
  kind,
  name,
}: {
  label: string;
  run: () => Promise<unknown>;
  onDone?: (result: unknown) => void;
  disabled?: boolean;
  /** danger: what cannot be undone asks for a second press (the button turns into "Confirm") */
  kind?: 'danger';
  name?: string;
}) {
  const [busy, setBusy] = useState(false);
  const [armed, setArmed] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!armed) return;
    const t = setTimeout(() => setArmed(false), 5000);
    return () => clearTimeout(t);
  }, [armed]);
  return (
    <span class="action">
      <button
        type="button"
        class={kind ?? ''}
        disabled={busy || disabled === true}
        aria-label={armed && name !== undefined ? `confirm ${name}` : name}
        onClick={() => {
          if (kind === 'danger' && !armed) {
            setArmed(true);
            return;
          }
          setArmed(false);
          setBusy(true);
          setError(null);
          run().then(
            (r) => {
              setBusy(false);
              onDone?.(r);
            },
            (err: unknown) => {
              setBusy(false);
              setError(message(err));
            },
          );
        }}
      >
        {armed ? `Confirm: ${label}` : label}
      </button>
      {error !== null && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}

export const when = (iso: string | null): string => (iso === null ? '—' : new Date(iso).toLocaleString());
