import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { Duration } from '../../src/config/fields.js';
import { configParts } from '../../src/config/parts.js';

const Schema = Type.Object({
  server: Type.Object({ port: Type.Integer(), timeout: Duration() }),
  items: Type.Array(Type.Object({ name: Type.String(), size: Type.Integer({ minimum: 1 }) })),
  byName: Type.Record(Type.String(), Type.Object({ url: Type.String({ pattern: '^http' }) })),
});

describe('configParts: what the checks across fields see', () => {
  const parts = configParts(Schema, {
    server: { port: 80, timeout: '2s' },
    items: [{ name: 'a', size: 0 }, { name: 'b', size: 2 }, 'x'],
    byName: { good: { url: 'http://a' }, bad: { url: 'ftp://b' } },
  });

  it('gives a part decoded when it satisfies the schema where it stands', () => {
    expect(parts.valid(Schema.properties.server, 'server')).toEqual({ port: 80, timeout: 2000 });
    expect(parts.valid(Schema.properties.items.items, 'items', 1)).toEqual({ name: 'b', size: 2 });
    expect(parts.valid(Schema.properties.byName.patternProperties['^(.*)$']!, 'byName', 'good')).toEqual({
      url: 'http://a',
    });
  });

  it('gives nothing for a part that fails the schema, but still the valid parts inside it', () => {
    expect(parts.valid(Schema.properties.items.items, 'items', 0)).toBeUndefined();
    expect(parts.valid(Type.String(), 'items', 0, 'name')).toBe('a');
    expect(parts.valid(Type.Object({ url: Type.String() }), 'byName', 'bad')).toBeUndefined();
  });

  it('judges by the config schema even when the caller reads with a looser one', () => {
    expect(parts.valid(Type.Integer(), 'items', 0, 'size')).toBeUndefined(); // 0 < minimum 1
    expect(parts.valid(Type.Unknown(), 'server', 'timeout')).toBe('2s'); // decoded by the caller's schema
  });

  it('gives nothing for a path the schema does not know or the value does not have', () => {
    expect(parts.valid(Type.Unknown(), 'server', 'other')).toBeUndefined();
    expect(parts.valid(Type.Unknown(), 'items', 7)).toBeUndefined();
    expect(parts.has('server', 'port')).toBe(true);
    expect(parts.has('server', 'host')).toBe(false);
  });

  it('lists keys and counts items, whatever their validity', () => {
    expect(parts.keys('byName')).toEqual(['good', 'bad']);
    expect(parts.keys('items')).toBeUndefined();
    expect(parts.length('items')).toBe(3);
    expect(parts.length('server')).toBe(0);
  });
});
