// Types of soak-checks.js for the TypeScript unit tests (test/unit/bench-soak-checks.test.ts);
// the benchmarks themselves are plain JS checked by their JSDoc.
export type Point = { t: number; v: number };
export type Sample = { name: string; labels: Record<string, string>; value: number };
export type FlatRule = { maxSlopePerMin: number; tolerance?: number; slack?: number };
export type FlatVerdict = {
  ok: boolean;
  samples: number;
  slopePerMin: number;
  median: number;
  thirdQuarterMax: number;
  lastQuarterMax: number;
  limit: number;
  first: number;
  last: number;
  max: number;
  reasons: string[];
};
export type Accounting = { enqueued: number; shipped: number; dropped: number; buffered: number };
export type Check = { name: string; ok: boolean; detail: string };

export function slopePerSecond(points: Point[]): number;
export function median(values: number[]): number;
export function floors(points: Point[], windowS: number): Point[];
export function flatness(points: Point[], rule: FlatRule): FlatVerdict;
export function accessLogAccounting(samples: Sample[]): Record<string, Accounting>;
export function gatewayRequests(samples: Sample[]): { total: number; byStatus: Record<string, number> };
export function equalCheck(
  name: string,
  leftName: string,
  left: number,
  rightName: string,
  right: number,
): Check;
export function accountingChecks(input: {
  client: { sent: number; received: number; errors: number; inflight: number };
  accessLog: Record<string, Accounting>;
  sink: string;
  sinkReceived: number | null;
  gatewayRequests: number | null;
}): Check[];
export function parsePrometheus(text: string): Sample[];
