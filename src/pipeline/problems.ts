/**
 * The problem registry, where the pipeline's stages have always imported it from. It lives in
 * `problems/`, a leaf every layer may import.
 */
export {
  problem,
  problems,
  problemType,
  PROBLEM_CODES,
  PROBLEM_REGISTRY,
  PROBLEM_TYPE_BASE,
  type Problem,
  type ProblemCode,
  type ProblemDefinition,
} from '../problems/registry.js';
export { problemBody, problemInstance, REQUEST_TAG } from '../problems/body.js';
