declare module 'ecs-provisioner:policy/policy@0.2.0' {
  /**
   * Validate and take the policy's own settings: the JSON text of the `[policy.settings]`
   * table (`{}` when absent). An error fails `check` and start-up, naming the setting.
   */
  export function configure(settings: string): void;
  /**
   * Decide how many nodes each template needs and which nodes to remove. Of an `Err` (here
   * and from `configure` and `place`) the host keeps at most about 1 KiB, with control
   * characters escaped.
   */
  export function scale(snapshot: Snapshot): ScalePlan;
  /**
   * Spread `request.count` nodes over the offerings open to the template (already filtered
   * to its zones, vswitches and instance types). `fleet` holds the template's current nodes.
   * Placing fewer than asked is allowed; the host reports the shortfall.
   */
  export function place(request: PlaceRequest, offerings: Array<Offering>, fleet: Array<Node>): Array<Placement>;
  /**
   * Whether a template's nodes run on preemptible (spot) instances.
   * # Variants
   * 
   * ## `"on-demand"`
   * 
   * Pay-as-you-go instances only.
   * ## `"spot-first"`
   * 
   * Spot instances first; on-demand when spot capacity recently failed or is absent.
   * ## `"spot-only"`
   * 
   * Spot instances only; no on-demand fallback.
   */
  export type SpotMode = 'on-demand' | 'spot-first' | 'spot-only';
  /**
   * A node template from the host's configuration: one kind of Jenkins agent.
   */
  export interface Template {
    /**
     * Unique template name; also the prefix of every Jenkins node it creates.
     */
    name: string,
    /**
     * Jenkins labels the template's nodes carry.
     */
    labels: Array<string>,
    /**
     * Build executors on each node.
     */
    executors: number,
    /**
     * Nodes the host keeps at all times (a warm pool). The host never removes below it.
     */
    minNodes: number,
    /**
     * Nodes allowed at once, counting launches still in flight. The host clamps to it.
     */
    maxNodes: number,
    /**
     * Seconds an idle node may live before it is due for removal (0 = never idle out).
     */
    idleTimeoutSecs: bigint,
    /**
     * Builds a node may run before it is retired (0 = unlimited; 1 = one-shot agents).
     */
    maxUses: number,
    /**
     * Spot or on-demand.
     */
    spot: SpotMode,
  }
  /**
   * One queued Jenkins build. Kept small: a queue may hold thousands.
   */
  export interface QueuedItem {
    /**
     * Jenkins queue item id.
     */
    id: bigint,
    /**
     * Milliseconds the item has waited in the queue.
     */
    waitMs: bigint,
  }
  /**
   * Queued builds that this template can serve: the first template whose labels match
   * the item's label expression, in configuration order.
   */
  export interface Demand {
    /**
     * Template name.
     */
    template: string,
    /**
     * Number of buildable items waiting for this template.
     */
    queued: number,
    /**
     * Longest wait among them, in milliseconds (0 when none wait).
     */
    oldestWaitMs: bigint,
    /**
     * The items themselves, oldest first.
     */
    items: Array<QueuedItem>,
  }
  /**
   * Where a node is in its life. `requested` to `connecting` are capacity in flight; only
   * `online` nodes run builds. Every node but a `stopped` one counts against `max-nodes` and
   * `max-total-nodes`, whatever its state, until the cloud has deleted its instance.
   * # Variants
   * 
   * ## `"requested"`
   * 
   * RunInstances answered with the instance id, but the cloud's listing does not show the
   * instance yet (listings lag behind launches by seconds).
   * ## `"pending"`
   * 
   * Instance exists, not yet running.
   * ## `"running"`
   * 
   * Instance running with an IP, bootstrap not yet started.
   * ## `"bootstrapping"`
   * 
   * SSH bootstrap (init script, agent start) in progress.
   * ## `"connecting"`
   * 
   * Agent started, waiting for Jenkins to see it online.
   * ## `"online"`
   * 
   * Agent online in Jenkins and accepting builds; see `busy-executors` and `idle-ms`.
   * ## `"offline"`
   * 
   * Agent connected but marked temporarily offline by someone other than this
   * provisioner (an administrator, or a Jenkins monitor such as disk space): it takes no
   * new build. `offline-reason` says why; `idle-ms` keeps counting while it runs nothing.
   * 0.1.0 policies see it as `draining`.
   * ## `"disconnected"`
   * 
   * The agent was online and has dropped (agent crash, reboot, network). The host
   * restarts it; past the template's `reconnect-timeout` it terminates the instance.
   * 0.1.0 policies see it as `terminating`.
   * ## `"interrupted"`
   * 
   * The cloud announced it will reclaim this spot instance within minutes. The host has
   * marked it offline in Jenkins and deletes its node when the instance is gone; launch a
   * replacement. 0.1.0 policies see it as `terminating`.
   * ## `"draining"`
   * 
   * Being removed by this provisioner: offline in Jenkins, about to be deleted.
   * ## `"terminating"`
   * 
   * Instance deletion requested (after removal, a failure or a launch timeout).
   * ## `"stopped"`
   * 
   * Stopped (or stopping) by the host as a warm pool (`idle-action = "stop"`): no
   * capacity, and not counted against `max-nodes` (the template's `max-stopped` caps
   * them). Keep one by doing nothing; start stopped nodes by launching: a launch for the
   * template starts its stopped nodes first and launches new instances only for the
   * rest; delete one by removing it. 0.1.0 policies see it as `terminating`.
   */
  export type NodeState = 'requested' | 'pending' | 'running' | 'bootstrapping' | 'connecting' | 'online' | 'offline' | 'disconnected' | 'interrupted' | 'draining' | 'terminating' | 'stopped';
  /**
   * A node of this provisioner: an ECS instance and its Jenkins agent.
   */
  export interface Node {
    /**
     * ECS instance id (e.g. `i-bp1...`). Removals name nodes by it.
     */
    instanceId: string,
    /**
     * Template the node was launched for.
     */
    template: string,
    /**
     * Zone the instance runs in.
     */
    zone: string,
    /**
     * Instance type.
     */
    instanceType: string,
    /**
     * Whether the instance is a spot instance.
     */
    spot: boolean,
    /**
     * Lifecycle state.
     */
    state: NodeState,
    /**
     * Executors currently running a build (0 unless online or draining).
     */
    busyExecutors: number,
    /**
     * Milliseconds the node has run nothing while connected (`online` or `offline`); 0
     * while busy or not connected.
     */
    idleMs: bigint,
    /**
     * Milliseconds since the launch was requested.
     */
    ageMs: bigint,
    /**
     * Builds the node has started so far.
     */
    uses: number,
    /**
     * Why the node is terminating, when it is (e.g. `launch-timeout`, `bootstrap-failed`).
     */
    failure?: string,
    /**
     * Why Jenkins shows the node offline (`offline`, `interrupted`, `draining`): the
     * offline message as Jenkins reports it, cut to 256 bytes.
     */
    offlineReason?: string,
  }
  /**
   * A capacity error the cloud returned for an offering recently.
   */
  export interface Failure {
    /**
     * Alibaba Cloud error code, e.g. `OperationDenied.NoStock`.
     */
    code: string,
    /**
     * When it happened (host clock, milliseconds since the Unix epoch).
     */
    atMs: bigint,
  }
  /**
   * One place a node can be launched: zone x vswitch x instance type x capacity type.
   */
  export interface Offering {
    /**
     * Zone, e.g. `cn-hangzhou-h`.
     */
    zone: string,
    /**
     * VSwitch in that zone the instance would attach to.
     */
    vswitch: string,
    /**
     * Instance type, e.g. `ecs.c7.large`.
     */
    instanceType: string,
    /**
     * Spot (preemptible) capacity when true, on-demand otherwise.
     */
    spot: boolean,
    /**
     * vCPUs of the instance type.
     */
    vcpus: number,
    /**
     * Memory of the instance type, in MiB.
     */
    memoryMib: number,
    /**
     * Free private IP addresses left in the vswitch.
     */
    freeIps: number,
    /**
     * Hourly price in the account's currency, when known.
     */
    pricePerHour?: number,
    /**
     * Whether the cloud reports stock for this type in this zone.
     */
    inStock: boolean,
    /**
     * The most recent capacity error for this offering, if any, so a policy can cool down.
     */
    lastFailure?: Failure,
  }
  /**
   * Everything `scale` may look at, observed at one instant.
   */
  export interface Snapshot {
    /**
     * Host clock, milliseconds since the Unix epoch. The only clock a policy sees.
     */
    nowMs: bigint,
    /**
     * Configured templates, in configuration order.
     */
    templates: Array<Template>,
    /**
     * Queued builds per template (templates with nothing queued may be absent).
     */
    demand: Array<Demand>,
    /**
     * Queued builds no template can serve (they never cause launches).
     */
    unmatchedQueued: number,
    /**
     * Every node of this provisioner, in any state.
     */
    nodes: Array<Node>,
    /**
     * Every offering, across templates.
     */
    offerings: Array<Offering>,
    /**
     * Nodes allowed across all templates at once (the cloud-wide cap).
     */
    maxTotalNodes: number,
  }
  /**
   * Launch nodes for one template.
   */
  export interface Launch {
    /**
     * Template name.
     */
    template: string,
    /**
     * How many nodes to add.
     */
    count: number,
    /**
     * Why, in a few words, for `plan` output and the status page. The host keeps at most
     * about 1 KiB of it, with control characters escaped.
     */
    reason: string,
  }
  /**
   * Remove one node.
   */
  export interface Removal {
    /**
     * Instance id of the node.
     */
    instanceId: string,
    /**
     * Why, in a few words. The host keeps at most about 1 KiB of it, with control
     * characters escaped.
     */
    reason: string,
  }
  /**
   * What `scale` decided. The host clamps it to the hard limits and logs every clamp.
   */
  export interface ScalePlan {
    /**
     * Nodes to add, per template.
     */
    launches: Array<Launch>,
    /**
     * Nodes to remove.
     */
    removals: Array<Removal>,
  }
  /**
   * Ask to turn a count into concrete launches.
   */
  export interface PlaceRequest {
    /**
     * Host clock, milliseconds since the Unix epoch.
     */
    nowMs: bigint,
    /**
     * The template to place nodes for.
     */
    template: Template,
    /**
     * How many nodes to place.
     */
    count: number,
  }
  /**
   * Launch `count` nodes on one offering.
   */
  export interface Placement {
    /**
     * Index into the `offerings` list passed to `place`.
     */
    offering: number,
    /**
     * Nodes to launch there.
     */
    count: number,
  }
}
