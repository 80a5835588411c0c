/** Usage against limits (`/keys/:id/usage`, `/consumers/:id/usage`). */
export type Limit = {
  name: string;
  kind: 'limit' | 'quota';
  limit: number;
  windowSec: number;
  current: number;
  previous: number;
  used: number;
  remaining: number;
  resetSec: number;
};
export type Usage = { subject: string; usage: { tier: string; limits: Limit[] }[] };

export function UsageTable({ usage }: { usage: Usage }) {
  return (
    <table class="usage">
      <thead>
        <tr>
          <th scope="col">tier</th>
          <th scope="col">limit</th>
          <th scope="col">used</th>
          <th scope="col">remaining</th>
          <th scope="col">resets in</th>
        </tr>
      </thead>
      <tbody>
        {usage.usage.flatMap((t) =>
          t.limits.map((l) => (
            <tr key={`${t.tier}/${l.name}`}>
              <td>{t.tier}</td>
              <td>
                {l.limit} per {l.name} {l.kind === 'quota' && '(quota)'}
              </td>
              <td>
                <meter min={0} max={l.limit} value={l.used} aria-label={`${t.tier} ${l.name} used`} />{' '}
                {l.used}
              </td>
              <td data-remaining>{l.remaining}</td>
              <td>{l.resetSec} s</td>
            </tr>
          )),
        )}
      </tbody>
    </table>
  );
}
