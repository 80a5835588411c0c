/**
 * Refuses a body whose declared Content-Length is over `limits.bodySize` (the route's, else the
 * gateway's) before reading it.
 * Chunked bodies are counted while they stream (see upstream/request-body.ts).
 */
import { problems } from '../../problems/registry.js';
import { defineStage } from '../stage.js';

export const bodyLimit = defineStage<number>({
  name: 'body-limit',
  order: 100,
  section: (route, config) => route.limits?.bodySize ?? config.limits.bodySize,
  create(limit) {
    const tooLarge = problems.bodyTooLarge(limit);
    return { onRequest: (ctx) => (ctx.bodyLength > limit ? tooLarge : undefined) };
  },
});
