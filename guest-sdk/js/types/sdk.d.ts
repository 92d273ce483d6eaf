// The SDK's API, typed with the contract's types that scripts/generate-types.mjs generates
// from wit/policy.wit (policy.d.ts and interfaces/; do not edit those by hand).
/// <reference path="./policy.d.ts" />
import type {
  Snapshot, Template, Node, NodeState, Offering, PlaceRequest, Placement, ScalePlan, SpotMode,
} from 'ecs-provisioner:policy/policy@0.2.0';
import type { Level } from 'ecs-provisioner:policy/host@0.2.0';

export type * from 'ecs-provisioner:policy/policy@0.2.0';
export const CONTRACT_VERSION: '0.2.0';

/** Fails `configure`, `scale` or `place` with its message. */
export class PolicyError extends Error {}

/** Extend and override what you change; every method defaults to the built-in policy. */
export class Policy {
  /** Optional parts of the snapshot `scale` reads (default `['nodes']`); the rest is not sent. */
  reads: Array<'nodes' | 'queued-items' | 'offerings'>;
  configure(settings: string): void;
  scale(snapshot: Snapshot): ScalePlan;
  place(request: PlaceRequest, offerings: Offering[], fleet: Node[]): Placement[];
}

export function isInFlight(state: NodeState): boolean;
export function isLeaving(state: NodeState): boolean;
export function isLive(node: Node): boolean;
export function isIdle(node: Node): boolean;
export function usedUp(node: Node, maxUses: number): boolean;
export function pricePerVcpu(o: Offering): number | undefined;
export function failedRecently(o: Offering, nowMs: bigint, cooldownMs: number): boolean;
export function isUsable(o: Offering, nowMs: bigint, cooldownMs: number): boolean;
export function templateOf(snapshot: Snapshot, name: string): Template | undefined;
export function queuedFor(snapshot: Snapshot, template: string): number;
export function nodesOf(snapshot: Snapshot, template: string): Node[];
export function launchesFor(plan: ScalePlan, template: string): number;
export function removedIds(plan: ScalePlan): string[];

export namespace defaults {
  const DEFAULT_COOLDOWN_MS: number;
  function scale(snapshot: Snapshot, options?: { warmNodes?: Record<string, number> }): ScalePlan;
  function place(request: PlaceRequest, offerings: Offering[], fleet: Node[], options?: { cooldownMs?: number }): Placement[];
  function usableOfferings(offerings: Offering[], nowMs: bigint, cooldownMs: number): number[];
  function capacityTiers(mode: SpotMode): boolean[];
  class FreeIps {
    constructor(offerings: Offering[]);
    left(index: number): number;
    take(index: number, n: number): number;
  }
  function countText(n: number | bigint, noun: string): string;
  function durationText(ms: number | bigint): string;
}

export namespace log {
  function write(level: Level, message: string): void;
  function trace(message: string): void;
  function debug(message: string): void;
  function info(message: string): void;
  function warn(message: string): void;
  function error(message: string): void;
  function setSink(hostLog: (level: Level, message: string) => void): void;
  function takeCaptured(): [Level, string][];
}

export namespace settings {
  type Convert<T> = (value: unknown, path: string) => T;
  interface Opts<T> { default?: T }
  class Table {
    value: Record<string, unknown>;
    path: string;
    get<T>(key: string, convert: Convert<T>, opts?: Opts<T>): T;
    int(key: string, opts?: Opts<number> & { min?: number; max?: number }): number;
    number(key: string, opts?: Opts<number>): number;
    str(key: string, opts?: Opts<string>): string;
    bool(key: string, opts?: Opts<boolean>): boolean;
    choice<T extends string>(key: string, options: T[], opts?: Opts<T>): T;
    list<T>(key: string, item: Convert<T>, opts?: Opts<T[]>): T[];
    map<T>(key: string, item: Convert<T>, opts?: Opts<Record<string, T>>): Record<string, T>;
    tables(key: string, opts?: Opts<Table[]>): Table[];
    done(): void;
  }
  function parse(text: string): Table;
  function expectNone(text: string): void;
  function fail(path: string, message: string): never;
  function integer(opts?: { min?: number; max?: number }): Convert<number>;
  const number: Convert<number>;
  const string: Convert<string>;
  const boolean: Convert<boolean>;
  function oneOf<T extends string>(options: T[]): Convert<T>;
}
