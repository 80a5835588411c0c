import type { GatewayMetrics } from '../observability/metrics.js';
import { Dependency } from './stage.js';

/** The process's metrics registry, for stages that count (null in tests that do not need it). */
export const METRICS = new Dependency<GatewayMetrics | null>('metrics');
