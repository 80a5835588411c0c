/**
 * A real gRPC server (@grpc/grpc-js) for tests, with a hand-written service definition whose
 * messages are UTF-8 strings (no protobuf): Unary echoes, ServerStream sends `n` messages,
 * Fail answers with the status the request names ("5:not here" → NOT_FOUND "not here").
 */
import * as grpc from '@grpc/grpc-js';

const text = {
  serialize: (s: string): Buffer => Buffer.from(s, 'utf8'),
  deserialize: (b: Buffer): string => b.toString('utf8'),
};

const method = (pkg: string, name: string, responseStream: boolean) => ({
  path: `/${pkg}/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: text.serialize,
  requestDeserialize: text.deserialize,
  responseSerialize: text.serialize,
  responseDeserialize: text.deserialize,
});

/** The Echo service's definition under a package name (the test server implements "test.Echo"). */
export function echoService(pkg = 'test.Echo') {
  return {
    Unary: method(pkg, 'Unary', false),
    ServerStream: method(pkg, 'ServerStream', true),
    Fail: method(pkg, 'Fail', false),
  } satisfies grpc.ServiceDefinition;
}

export const EchoService = echoService();

export type EchoClient = grpc.Client & {
  Unary(
    req: string,
    meta: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: string) => void,
  ): grpc.ClientUnaryCall;
  ServerStream(req: string, meta?: grpc.Metadata): grpc.ClientReadableStream<string>;
  Fail(
    req: string,
    meta: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: string) => void,
  ): grpc.ClientUnaryCall;
};

/** A grpc-js client of the Echo service at `address` ("host:port"). */
export function echoClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  pkg = 'test.Echo',
): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoService(pkg), pkg);
  return new Client(address, credentials) as unknown as EchoClient;
}

/** One unary call: the answer, or the error status (code, details, trailing metadata). */
export function unary(
  client: EchoClient,
  req: string,
  metadata = new grpc.Metadata(),
  method: 'Unary' | 'Fail' = 'Unary',
): Promise<{ ok: true; value: string } | { ok: false; error: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client[method](req, metadata, { deadline: Date.now() + 5000 }, (error, value) =>
      resolve(error ? { ok: false, error } : { ok: true, value: value as string }),
    );
  });
}

export type GrpcTestServer = {
  port: number;
  /** metadata of every call received (what the gateway forwarded) */
  calls: Array<{ method: string; metadata: Record<string, unknown> }>;
  close(): Promise<void>;
};

export async function startGrpcServer(
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<GrpcTestServer> {
  const server = new grpc.Server();
  const calls: GrpcTestServer['calls'] = [];
  const seen = (name: string, metadata: grpc.Metadata) =>
    calls.push({ method: name, metadata: metadata.getMap() });
  server.addService(EchoService, {
    Unary: (call: grpc.ServerUnaryCall<string, string>, done: grpc.sendUnaryData<string>) => {
      seen('Unary', call.metadata);
      done(null, `echo: ${call.request}`);
    },
    ServerStream: (call: grpc.ServerWritableStream<string, string>) => {
      seen('ServerStream', call.metadata);
      const n = Number(call.request);
      for (let i = 0; i < n; i++) call.write(`message ${i}`);
      call.end();
    },
    Fail: (call: grpc.ServerUnaryCall<string, string>, done: grpc.sendUnaryData<string>) => {
      seen('Fail', call.metadata);
      const [code, ...rest] = call.request.split(':');
      done({ code: Number(code), details: rest.join(':') });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => server.forceShutdown(), 1000).unref();
      }),
  };
}

/** A length-prefixed gRPC message (uncompressed), as on the wire. */
export function grpcFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** The messages of a gRPC response body. */
export function grpcMessages(body: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + 5 <= body.length;) {
    const len = body.readUInt32BE(at + 1);
    out.push(body.subarray(at + 5, at + 5 + len).toString('utf8'));
    at += 5 + len;
  }
  return out;
}
