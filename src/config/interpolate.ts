/**
 * `${VAR}` and `${VAR:-default}` in config values, replaced from the environment.
 *
 * The tokens are swapped for inert placeholders before the YAML is parsed (so that
 * `{ token: ${TOKEN:-} }` is valid even inside a flow mapping, where `{` and `}` are syntax) and
 * expanded afterwards inside the parsed scalars: a variable's value can never inject YAML
 * structure, and line numbers stay exact.
 *
 * - `${VAR}`: the variable's value; unset is an error, set but empty gives "".
 * - `${VAR:-default}`: the default when the variable is unset *or empty* (as in the shell). The
 *   default runs to the first `}`, so it cannot itself contain `}`; it is taken literally (no
 *   nested `${...}`).
 * - `$${` is a literal `${` (so `$${X}` gives the text `${X}`).
 * - Any other `${` (`${}`, `${1X}`, `${X:y}`, `${X` without `}`) is reported as an invalid
 *   interpolation rather than silently kept.
 * - Tokens inside comments are never looked at (comments are not scalars).
 * - A U+E000 already in the text (it marks placeholders) is itself swapped for a placeholder, so
 *   it comes back unchanged.
 */
const TOKEN = /\$\$\{|\$\{([^}\n]*)(\})?|\uE000/g;
const VALID = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;
const PLACEHOLDER = /\uE000(\d+)\uE001/g;

type Token = { literal: string } | { name: string; fallback: string | undefined } | { invalid: string };

export type Extracted = { text: string; tokens: Token[] };

export function extractTokens(text: string): Extracted {
  const tokens: Token[] = [];
  const out = text.replace(TOKEN, (match, inner: string | undefined, close: string | undefined) => {
    const valid = close === undefined ? null : VALID.exec(inner ?? '');
    if (match === '$${') tokens.push({ literal: '${' });
    else if (match === '\uE000') tokens.push({ literal: match });
    else if (valid) tokens.push({ name: valid[1] as string, fallback: valid[2] });
    else tokens.push({ invalid: match });
    return `\uE000${tokens.length - 1}\uE001`;
  });
  return { text: out, tokens };
}

export const hasPlaceholder = (value: string): boolean => value.includes('\uE000');

export type Expansion = { value: string; missing: string[]; invalid: string[] };

/** Replaces the placeholders in one parsed scalar with their values from `env`. */
export function expand(value: string, tokens: readonly Token[], env: NodeJS.ProcessEnv): Expansion {
  const missing: string[] = [];
  const invalid: string[] = [];
  const result = value.replace(PLACEHOLDER, (_m, index: string) => {
    const token = tokens[Number(index)];
    if (token === undefined) return '';
    if ('literal' in token) return token.literal;
    if ('invalid' in token) {
      invalid.push(token.invalid);
      return token.invalid;
    }
    const found = env[token.name];
    if (found !== undefined && found !== '') return found;
    if (token.fallback !== undefined) return token.fallback;
    if (found === undefined) missing.push(token.name);
    return '';
  });
  return { value: result, missing, invalid };
}

/** Expands a whole string at once (for values that never went through YAML). */
export function interpolate(input: string, env: NodeJS.ProcessEnv): Expansion {
  const { text, tokens } = extractTokens(input);
  return expand(text, tokens, env);
}
