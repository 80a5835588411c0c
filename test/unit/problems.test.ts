import { describe, expect, it } from 'vitest';
import { problemBody, problemInstance, problems } from '../../src/pipeline/problems.js';
import { requestIdFor } from '../../src/server/request-id.js';

describe('problem instance (RFC 9457 §3.1.5: a URI reference)', () => {
  it('is urn:uuid:<id> for a UUID, as generated or as sent', () => {
    const id = requestIdFor(undefined);
    expect(problemInstance(id)).toBe(`urn:uuid:${id}`);
    expect(problemInstance('0F8FAD5B-D9CB-469F-A165-70867728950E')).toBe(
      'urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E',
    );
  });

  it('is a tag URI (RFC 4151) for any other request id, the id unchanged after the prefix', () => {
    expect(problemInstance('err-1')).toBe('tag:gatehouse.dev,2026:request:err-1');
    expect(problemInstance('a:b.c_d')).toBe('tag:gatehouse.dev,2026:request:a:b.c_d');
    // almost a UUID is not one
    expect(problemInstance('0f8fad5b-d9cb-469f-a165-70867728950')).toMatch(/^tag:/);
  });

  it('parses as an absolute URI whatever request id the gateway keeps', () => {
    for (const id of ['x', 'a:b', '..', '-', 'A'.repeat(128), requestIdFor(undefined)]) {
      expect(requestIdFor(id)).toBe(id);
      const url = new URL(problemInstance(id));
      expect(['urn:', 'tag:']).toContain(url.protocol);
    }
  });

  it('is what the problem body carries', () => {
    const body = JSON.parse(problemBody(problems.noRoute(), 'err-1')) as Record<string, unknown>;
    expect(body).toEqual({
      type: 'https://gatehouse.dev/problems/no_route',
      title: 'Not Found',
      status: 404,
      detail: 'no route matches this request',
      instance: 'tag:gatehouse.dev,2026:request:err-1',
      code: 'no_route',
    });
  });
});
