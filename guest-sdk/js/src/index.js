// ecs-policy-sdk for JavaScript: write ecs-provisioner placement and scaling policies.
// A policy extends `Policy`, overrides what it changes and calls `defaults` to adjust; its
// entry module exports it with `exportPolicy` (ecs-policy-sdk/component); `testing` runs it
// natively under `node --test` against the same fixture files as `policy test`.

export * as defaults from './defaults.js';
export * as log from './log.js';
export * as reads from './reads.js';
export * as settings from './settings.js';
export { PolicyError } from './errors.js';
export { Policy } from './policy.js';
export * from './types.js';

/** The contract version this SDK builds policies for (the WIT package version). */
export const CONTRACT_VERSION = '0.2.0';
