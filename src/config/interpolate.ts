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
 * - The gateway's own per-request placeholders (`${consumer.id}`, `${request.path}`...: a
 *   known prefix and a dot, which no environment variable name has) are kept as written, for the
 *   route's `transform` and `redirect` to fill in per request.
 * - Any other `${` (`${}`, `${1X}`, `${X:y}`, `${X` without `}`) is reported as an invalid
 *   interpolation rather than silently kept.
 * - Tokens inside comments are never looked at (comments are not scalars).
 * - A U+E000 already in the text (it marks placeholders) is itself swapped for a placeholder, so
 *   it comes back unchanged.
 */
const TOKEN = /\$\$\{|\$\{([^}\n]*)(\})?|\uE000/g;
const VALID = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;
/** router/policy-config.ts checks which of these a field accepts */
const GATEWAY_PLACEHOLDER = /^(consumer|route|request|client|header|jwt)\.[^\s{}$]+$/;
const PLACEHOLDER = /\uE000(\d+)\uE001/g;

type Token = { literal: string } | { name: string; fallback: string | undefined } | { invalid: string };

/**
 * The text with its tokens swapped for placeholders, the tokens, and where an offset into that
 * text was in the original (a placeholder is not as long as its token: columns must be mapped
 * back; lines need not, as neither ever holds a newline).
 */
export type Extracted = { text: string; tokens: Token[]; originalOffset: (offset: number) => number };

export function extractTokens(text: string): Extracted {
  const tokens: Token[] = [];
  // per placeholder: its start in the new text, its length, and its token's start in the original
  const swaps: Array<{ at: number; length: number; from: number; to: number }> = [];
  let shift = 0; // new offset - original offset, so far
  const out = text.replace(
    TOKEN,
    (match: string, inner: string | undefined, close: string | undefined, offset: number) => {
      const valid = close === undefined ? null : VALID.exec(inner ?? '');
      if (match === '$${') tokens.push({ literal: '${' });
      else if (match === '\uE000') tokens.push({ literal: match });
      else if (valid) tokens.push({ name: valid[1] as string, fallback: valid[2] });
      else if (close !== undefined && GATEWAY_PLACEHOLDER.test(inner ?? '')) tokens.push({ literal: match });
      else tokens.push({ invalid: match });
      const placeholder = `\uE000${tokens.length - 1}\uE001`;
      swaps.push({ at: offset + shift, length: placeholder.length, from: offset, to: offset + match.length });
      shift += placeholder.length - match.length;
      return placeholder;
    },
  );
  const originalOffset = (offset: number): number => {
    let mapped = offset;
    for (const swap of swaps) {
      if (offset < swap.at) break;
      if (offset < swap.at + swap.length) return swap.from;
      mapped = offset - (swap.at + swap.length) + swap.to;
    }
    return mapped;
  };
  return { text: out, tokens, originalOffset };
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
