/** Schemas several admin endpoints share (what they answer about keys, problems, ids). */
import { FormatRegistry, Type } from '@sinclair/typebox';

// TypeBox refuses a format it does not know: an instant as JSON carries it (RFC 3339)
if (!FormatRegistry.Has('date-time'))
  FormatRegistry.Set(
    'date-time',
    (v) =>
      /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i.test(v) && !Number.isNaN(Date.parse(v)),
  );

export const KeyId = Type.String({
  pattern: '^[0-9A-Za-z]{12}$',
  description: 'the key id (12 letters or digits)',
});

export const KeyIdParams = Type.Object({ id: KeyId }, { additionalProperties: false });

/** a consumer: a key id, or a JWT `sub` */
export const ConsumerParams = Type.Object(
  {
    id: Type.String({
      pattern: '^[A-Za-z0-9_.@:|+=-]{1,256}$',
      description: 'the consumer id (a key id, or a JWT `sub`)',
    }),
  },
  { additionalProperties: false },
);

const Instant = Type.String({ format: 'date-time' });
const NullableInstant = Type.Union([Instant, Type.Null()]);

/** A key as shown: never the key itself, never its hash. */
export const KeyView = Type.Object(
  {
    id: KeyId,
    name: Type.String(),
    tier: Type.String(),
    roles: Type.Array(Type.String()),
    createdAt: Instant,
    expiresAt: NullableInstant,
    revokedAt: NullableInstant,
    lastUsedAt: NullableInstant,
  },
  { additionalProperties: false },
);

/** A key as created: the one time the key is shown. */
export const IssuedKey = Type.Object(
  {
    ...KeyView.properties,
    key: Type.String({ description: 'the API key: shown this once, never stored' }),
  },
  { additionalProperties: false },
);

export const Empty = Type.Object({}, { additionalProperties: false });
