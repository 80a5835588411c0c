/** Gateway problems as gRPC status, gRPC request detection, and upstream trailers passed on. */
import { describe, expect, it } from 'vitest';
import { GrpcStatus, grpcMessage, grpcStatusOf, isGrpc } from '../../src/problems/grpc.js';
import { PROBLEM_REGISTRY, problem, type ProblemCode } from '../../src/problems/registry.js';
import { classify, failureReason } from '../../src/upstream/errors.js';
import { trailersOf } from '../../src/upstream/trailers.js';

describe('gRPC status of a problem', () => {
  const of = (code: ProblemCode) => grpcStatusOf(problem(code, 'x'));

  it('maps the codes the gateway answers with', () => {
    expect(of('unauthenticated')).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(of('forbidden')).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(of('no_route')).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(of('rate_limited')).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(of('quota_exceeded')).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(of('body_too_large')).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(of('upstream_error')).toBe(GrpcStatus.UNAVAILABLE);
    expect(of('circuit_open')).toBe(GrpcStatus.UNAVAILABLE);
    expect(of('no_healthy_target')).toBe(GrpcStatus.UNAVAILABLE);
    expect(of('shutting_down')).toBe(GrpcStatus.UNAVAILABLE);
    expect(of('upstream_timeout')).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(of('request_timeout')).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    expect(of('internal_error')).toBe(GrpcStatus.INTERNAL);
    expect(of('bad_request')).toBe(GrpcStatus.INTERNAL);
  });

  it('gives every problem of the data plane a status other than OK', () => {
    for (const code of Object.keys(PROBLEM_REGISTRY) as ProblemCode[]) {
      const status = of(code);
      expect(status, code).toBeGreaterThan(0);
      expect(status, code).toBeLessThanOrEqual(16);
    }
  });

  it('percent-encodes grpc-message outside printable ASCII, and "%"', () => {
    expect(grpcMessage('plain text: ok')).toBe('plain text: ok');
    expect(grpcMessage('100% sûr\n')).toBe('100%25 s%C3%BBr%0A');
  });
});

describe('gRPC requests', () => {
  it('are application/grpc and its +format variants, not gRPC-Web or look-alikes', () => {
    expect(isGrpc('application/grpc')).toBe(true);
    expect(isGrpc('application/grpc+proto')).toBe(true);
    expect(isGrpc('application/grpc;charset=utf-8')).toBe(true);
    expect(isGrpc('application/grpc-web')).toBe(false);
    expect(isGrpc('application/grpcx')).toBe(false);
    expect(isGrpc('application/json')).toBe(false);
    expect(isGrpc(undefined)).toBe(false);
  });
});

describe('upstream trailers', () => {
  it('come from an HTTP/1.1 list or an HTTP/2 object; none is null', () => {
    expect(trailersOf([])).toBeNull();
    expect(trailersOf(undefined)).toBeNull();
    expect(trailersOf([Buffer.from('Grpc-Status'), Buffer.from('0')])).toEqual({ 'grpc-status': '0' });
    expect(trailersOf({ 'grpc-status': '5', 'grpc-message': 'gone', 'x-a': ['1', '2'] })).toEqual({
      'grpc-status': '5',
      'grpc-message': 'gone',
      'x-a': ['1', '2'],
    });
  });

  it('never carry framing, connection or pseudo headers (a hostile upstream cannot forge them)', () => {
    expect(
      trailersOf({
        'content-length': '5',
        'transfer-encoding': 'chunked',
        connection: 'close',
        ':status': '500',
        'x-request-id': 'forged',
        host: 'evil',
        'x-checksum': 'abc',
      }),
    ).toEqual({ 'x-checksum': 'abc' });
    expect(trailersOf({ connection: 'close' })).toBeNull();
  });
});

describe('TLS failures', () => {
  const err = (code: string, message = 'm') => Object.assign(new Error(message), { code });

  it('are their own failure (not retried), whatever check refused', () => {
    for (const code of [
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'SELF_SIGNED_CERT_IN_CHAIN',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'CERT_HAS_EXPIRED',
      'ERR_TLS_CERT_ALTNAME_INVALID',
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      'ERR_SSL_WRONG_VERSION_NUMBER',
    ])
      expect(classify(err(code)), code).toBe('tls');
    expect(classify(err('ECONNREFUSED'))).toBe('connect-error');
  });

  it("are logged with node's reason and the code", () => {
    expect(failureReason('tls', err('CERT_HAS_EXPIRED', 'certificate has expired'))).toBe(
      'tls: certificate has expired (CERT_HAS_EXPIRED)',
    );
    expect(failureReason('connect-error', err('ECONNREFUSED'))).toBe('connect-error (ECONNREFUSED)');
    expect(failureReason('reset', new Error('x'))).toBe('reset');
  });
});
