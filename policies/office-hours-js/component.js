// The component's entry module: exports the policy as the WIT `policy` interface and hands
// the host's log and `declareReads` to the SDK.
import { log, declareReads } from 'ecs-provisioner:policy/host@0.2.0';
import { exportPolicy } from 'ecs-policy-sdk/component';
import { OfficeHours } from './src/office-hours.js';

export const policy = exportPolicy(OfficeHours, { log, declareReads });
