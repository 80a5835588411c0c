/**
 * The leaf every config section is built from: the field types the file shares (durations,
 * sizes, ports, URLs, addresses), the helpers that shape a section, and what a check across
 * fields is given. A capability's `config.ts` imports from here and from TypeBox only, never
 * from schema.ts (which composes the sections), so the config layer stays below its owners.
 *
 * `errorMessage` (on leaf schemas) is the whole message a validation error there reports (see
 * messages.ts); editors ignore the keyword. `propertyNames.errorMessage` does the same for a
 * record's keys.
 */
import { isIP, type BlockList } from 'node:net';
import { FormatRegistry, Type, type StaticDecode, type TSchema } from '@sinclair/typebox';
import {
  DURATION_PATTERN,
  MAX_DURATION_MS,
  SIZE_PATTERN,
  isDuration,
  parseDuration,
  parseSize,
} from './units.js';

/** Checked beside DURATION_PATTERN: the pattern cannot bound the value (see units.ts). */
const DURATION_FORMAT = 'gatehouse-duration';
if (!FormatRegistry.Has(DURATION_FORMAT)) FormatRegistry.Set(DURATION_FORMAT, isDuration);

/** The same, with a lower bound (one format per bound, registered once). */
function durationFormat(minMs: number): string {
  if (minMs === 0) return DURATION_FORMAT;
  const name = `${DURATION_FORMAT}-min-${minMs}ms`;
  if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, (v) => isDuration(v) && parseDuration(v) >= minMs);
  return name;
}

export type DurationOptions = {
  /** the shortest value allowed, written as in the file ("1ms", "100ms"); default 0 */
  readonly min?: string;
  /** why a shorter value is refused: ends the message of one that is */
  readonly why?: string;
  /** what 0 means, where 0 is allowed and means something other than "no time" */
  readonly zero?: string;
};

/**
 * A duration in the file ("10s" or milliseconds); a number of milliseconds once loaded. Every
 * duration has a minimum (`min`) or a documented meaning for 0 (`zero`): 0 ms is a busy loop
 * for an interval, and "no timeout at all" for most clients Gatehouse drives (node:http, undici).
 */
export const Duration = (defaultValue?: string, options: DurationOptions = {}) => {
  const minMs = options.min === undefined ? 0 : parseDuration(options.min);
  const bounds = minMs === 0 ? '' : ` (at least ${options.min})`;
  return Type.Transform(
    Type.Union(
      [
        Type.String({ pattern: DURATION_PATTERN, format: durationFormat(minMs) }),
        Type.Integer({ minimum: minMs, maximum: MAX_DURATION_MS }),
      ],
      {
        description:
          `a duration: "250ms", "10s", "5m", "1h", "1d", or a number of milliseconds${bounds}` +
          (options.zero === undefined ? '' : `; 0 = ${options.zero}`),
        errorMessage:
          minMs === 0
            ? 'must be a duration such as "250ms", "10s", "5m", "1h" or "1d" (at most 24 days), or a number of milliseconds'
            : `must be a duration from ${options.min} to 24 days, such as "250ms", "10s", "5m", "1h" or "1d", or a number of milliseconds`,
        ...(minMs === 0
          ? {}
          : {
              // messages.ts: a well-formed duration under the minimum is told so, and why
              minimumMs: minMs,
              minimumMessage: `must be at least ${options.min}`,
              ...(options.why === undefined ? {} : { minimumWhy: options.why }),
            }),
        ...(defaultValue === undefined ? {} : { default: defaultValue }),
      },
    ),
  )
    .Decode((v) => parseDuration(v))
    .Encode((ms) => ms);
};

/** `auto`, or a duration as `Duration` takes it; `auto` stays `auto` once loaded. */
export const AutoOrDuration = (defaultValue: 'auto', description: string, autoMeans: string) =>
  Type.Transform(
    Type.Union(
      [
        Type.Literal('auto'),
        Type.String({ pattern: DURATION_PATTERN, format: DURATION_FORMAT }),
        Type.Integer({ minimum: 0, maximum: MAX_DURATION_MS }),
      ],
      {
        default: defaultValue,
        description,
        errorMessage: `must be "auto" (${autoMeans}), a duration such as "5s" or "500ms" (at most 24 days), or a number of milliseconds`,
      },
    ),
  )
    .Decode((v): number | 'auto' => (v === 'auto' ? 'auto' : parseDuration(v)))
    .Encode((v) => v);

/** A duration written as a name too: `{ name, ms }` once loaded (see NamedDuration). */
export type Window = { readonly name: string; readonly ms: number };

/**
 * A duration whose text is also a name (a rate-limit window: "1m" names its counters and its
 * RateLimit-Policy); `{ name, ms }` once loaded, the name trimmed. `pattern` must admit only
 * durations (a subset of DURATION_PATTERN).
 */
export const NamedDuration = (options: { pattern: string; description: string; errorMessage: string }) =>
  Type.Transform(Type.String(options))
    .Decode((v): Window => {
      const name = v.trim();
      return { name, ms: parseDuration(name) };
    })
    .Encode((w) => w.name);

/** A size in the file ("10mb" or bytes); a number of bytes once loaded. */
export const Size = (defaultValue?: string) =>
  Type.Transform(
    Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })], {
      description: 'a size: "512b", "64kb", "10mb", "1gb", or a number of bytes',
      errorMessage: 'must be a size such as "512b", "64kb", "10mb" or "1gb", or a number of bytes',
      ...(defaultValue === undefined ? {} : { default: defaultValue }),
    }),
  )
    .Decode((v) => parseSize(v))
    .Encode((bytes) => bytes);

/** A port to listen on. */
export const Port = (defaultValue: number) =>
  Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: defaultValue,
    description: 'TCP port (0 = any free port)',
    errorMessage: 'must be a port number from 0 to 65535 (0 = any free port)',
  });

/** An http(s) URL to send to (a collector, a sink): any path allowed. */
export const HTTP_URL = '^https?://[^\\s]+$';

/** An object that refuses unknown keys (a typo must not be ignored). */
export const strict = { additionalProperties: false } as const;

/** An object whose keys all have defaults, so an absent section is filled in too. */
export const Section = <T extends Parameters<typeof Type.Object>[0]>(props: T, description: string) =>
  Type.Object(props, { ...strict, default: {}, description });

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

/** Parses `10.0.0.0/8`, `::1`, `192.168.1.7` into a BlockList entry; returns an error message or null. */
export function addAddressOrCidr(list: BlockList, entry: string): string | null {
  const [addr = '', bits, extra] = entry.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (bits === undefined) {
    list.addAddress(addr, type);
    return null;
  }
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128))
    return `"${entry}": invalid prefix length`;
  list.addSubnet(addr, prefix, type);
  return null;
}

/** A step of a path into the config: a key, or a list index (`routes`, 0, `match`). */
export type PathSegment = string | number;

/** Reports a problem of the field at `path`. */
export type Report = (path: readonly PathSegment[], message: string) => void;

/**
 * The config as the checks across fields see it: what the file says, defaults applied. A check
 * asks for each part it reads, giving the part's schema (which types and decodes it): it gets the
 * part when it satisfies the config's schema there, else undefined (absent, or wrong, which the
 * schema already reported). A check skips what it cannot read and the others still run, so one
 * run reports every problem in the file.
 */
export type ConfigParts = {
  /**
   * The part at `path`, decoded (durations in milliseconds), when it satisfies the config's
   * schema there; `schema` is that schema or a looser one (a part another section owns).
   */
  valid<S extends TSchema>(schema: S, ...path: PathSegment[]): StaticDecode<S> | undefined;
  /** Whether the file (or a default) gives `path` a value, valid or not. */
  has(...path: PathSegment[]): boolean;
  /** The keys of the mapping at `path` (undefined when it is not a mapping). */
  keys(...path: PathSegment[]): string[] | undefined;
  /** The length of the list at `path` (0 when it is not a list). */
  length(...path: PathSegment[]): number;
};

/** A check across fields: reads the parts it needs, reports what contradicts. */
export type ConfigCheck = (config: ConfigParts, report: Report) => void;
