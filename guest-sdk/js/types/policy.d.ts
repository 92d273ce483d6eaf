/// <reference path="./interfaces/ecs-provisioner-policy-host.d.ts" />
/// <reference path="./interfaces/ecs-provisioner-policy-policy.d.ts" />
declare module 'ecs-provisioner:policy/policy-module@0.2.0' {
  export type * as EcsProvisionerPolicyHost020 from 'ecs-provisioner:policy/host@0.2.0'; // import ecs-provisioner:policy/host@0.2.0
  export * as policy from 'ecs-provisioner:policy/policy@0.2.0'; // export ecs-provisioner:policy/policy@0.2.0
}
