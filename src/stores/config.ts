/**
 * The stores' config: Redis (shared counters) and the database of API keys; and the check that
 * Redis is one node or a cluster.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Duration, strict, type ConfigCheck } from '../config/fields.js';

export const RedisSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({ pattern: '^rediss?://', description: 'one Redis node: redis://host:6379' }),
    ),
    cluster: Type.Optional(
      Type.Array(Type.String({ pattern: '^redis://' }), {
        minItems: 1,
        description: 'Redis Cluster seed nodes',
      }),
    ),
    timeout: Duration('50ms', { min: '1ms', why: '0 would mean no timeout at all' }),
  },
  { ...strict, description: 'Shared counters. Absent: in-memory counters (one instance only).' },
);

export const DatabaseSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL; absent = embedded SQLite' }),
    ),
    file: Type.String({ default: './data/gatehouse.db', description: 'the embedded SQLite file (no `url`)' }),
  },
  { ...strict, default: {}, description: 'Where API keys live.' },
);

export type RedisConfig = StaticDecode<typeof RedisSchema>;
export type DatabaseConfig = StaticDecode<typeof DatabaseSchema>;

export const checkStores: ConfigCheck = (config, report) => {
  const redis = config.valid(RedisSchema, 'redis');
  if (redis && (redis.url === undefined) === (redis.cluster === undefined)) {
    report(['redis'], 'must have exactly one of `url` (one node) or `cluster` (seed nodes)');
  }
};
