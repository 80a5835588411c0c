/**
 * Refuses a body whose declared Content-Length is over `limits.bodySize` before reading it.
 * Chunked bodies are counted while they stream (see upstream/request-body.ts).
 */
import { problems } from '../../pipeline/problems.js';
import type { Stage, StageFactory } from '../stage.js';

export const bodyLimit: StageFactory = {
  name: 'body-limit',
  compile(_route, config): Stage {
    const limit = config.limits.bodySize;
    const tooLarge = problems.bodyTooLarge(limit);
    return {
      name: 'body-limit',
      run: (ctx) => (ctx.bodyLength > limit ? tooLarge : undefined),
    };
  },
};
