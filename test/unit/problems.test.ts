import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/problems.js';
import { problemBody, problemInstance } from '../../src/problems/body.js';
import { ErrorCodes, errorCode, hasCode } from '../../src/problems/error-codes.js';
import { PROBLEM_CODES, PROBLEM_REGISTRY, problem, problems } from '../../src/problems/registry.js';
import { StoreTimeoutError } from '../../src/ratelimit/guarded-store.js';
import { StoreUnavailableError } from '../../src/ratelimit/store.js';
import { SchemaError } from '../../src/stores/migrations.js';
import { classify } from '../../src/upstream/errors.js';
import { BodyTooLargeError } from '../../src/upstream/request-body.js';
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

describe('the registry', () => {
  it('gives a problem its status and title from the code', () => {
    expect(problem('quota_exceeded', 'used up', ['retry-after', '5'])).toEqual({
      status: 429,
      code: 'quota_exceeded',
      title: 'Too Many Requests',
      detail: 'used up',
      headers: ['retry-after', '5'],
    });
    for (const code of PROBLEM_CODES) {
      const p = problem(code, 'x');
      expect([p.status, p.title]).toEqual([PROBLEM_REGISTRY[code].status, PROBLEM_REGISTRY[code].title]);
    }
  });

  it('is closed: a code outside it does not compile', () => {
    // @ts-expect-error 'teapot' is no problem code
    expect(() => problem('teapot', 'short and stout')).toThrow(TypeError);
  });

  it('serialises the errors extension member last, the rest as always', () => {
    const p = { ...problem('invalid_config', 'the config file is invalid'), errors: ['a.yaml:1: x: bad'] };
    expect(problemBody(p, 'err-1')).toBe(
      '{"type":"https://gatehouse.dev/problems/invalid_config","title":"Bad Request","status":400,' +
        '"detail":"the config file is invalid","instance":"tag:gatehouse.dev,2026:request:err-1",' +
        '"code":"invalid_config","errors":["a.yaml:1: x: bad"]}',
    );
  });
});

describe('internal error codes', () => {
  it('each error class that crosses a module carries its stable code', () => {
    expect(new BodyTooLargeError(10).code).toBe(ErrorCodes.BODY_TOO_LARGE);
    expect(new StoreUnavailableError('down').code).toBe(ErrorCodes.STORE_UNAVAILABLE);
    expect(new StoreTimeoutError(5).code).toBe(ErrorCodes.STORE_TIMEOUT);
    expect(new SchemaError('foreign table').code).toBe(ErrorCodes.SCHEMA);
    expect(new ConfigError([]).code).toBe(ErrorCodes.CONFIG_INVALID);
  });

  it('upstream failures are classified by code, whatever the class', () => {
    expect(classify(new BodyTooLargeError(10))).toBe('body-too-large');
    expect(classify({ code: ErrorCodes.BODY_TOO_LARGE })).toBe('body-too-large');
    expect(classify({ code: 'ECONNREFUSED' })).toBe('connect-error');
    expect(classify({ code: 'HPE_INVALID_CHUNK_SIZE' })).toBe('protocol');
    expect(classify({ code: 42 })).toBe('reset');
    expect(classify(null)).toBe('reset');
    expect(classify(new Error('ECONNREFUSED'))).toBe('reset'); // never the message
  });

  it('hasCode and errorCode read any thrown value', () => {
    expect(errorCode('text')).toBeUndefined();
    expect(errorCode({ code: 'UND_ERR_ABORTED' })).toBe('UND_ERR_ABORTED');
    expect(hasCode(new SchemaError('x'), ErrorCodes.SCHEMA)).toBe(true);
    expect(hasCode(new Error('GATEHOUSE_SCHEMA'), ErrorCodes.SCHEMA)).toBe(false);
  });
});
