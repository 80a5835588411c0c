/**
 * `${VAR}` and `${VAR:-default}` in config values, replaced from the environment.
 *
 * The tokens are swapped for inert placeholders before the YAML is parsed (so that
 * `{ token: ${TOKEN:-} }` is valid even inside a flow mapping, where `{` and `}` are syntax) and
 * expanded afterwards inside the parsed scalars: a variable's value can never inject YAML
 * structure, and line numbers stay exact. `$${` is a literal `${`.
 */
const TOKEN = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)?(?::-([^}\n]*))?\}/g;
const PLACEHOLDER = /\uE000(\d+)\uE001/g;

type Token = { literal: string } | { name: string; fallback: string | undefined } | { invalid: string };

export type Extracted = { text: string; tokens: Token[] };

export function extractTokens(text: string): Extracted {
  const tokens: Token[] = [];
  const out = text.replace(TOKEN, (match, name: string | undefined, fallback: string | undefined) => {
    if (match === '$${') tokens.push({ literal: '${' });
    else if (name === undefined) tokens.push({ invalid: match });
    else tokens.push({ name, fallback });
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
