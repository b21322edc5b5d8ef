/**
 * The loop's shared state: what its parts (the controller's timers, the host scan, the reconciler,
 * the executor, the launcher) all read and change, built once in the Controller's constructor.
 */
import type { Cluster, Host } from '../../config/cluster.ts';
import type { UsersSettings } from '../../config/users.ts';
import type { Backend } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';
import type { Access } from '../core/permissions.ts';
import type { PreflightPair } from '../core/preflight.ts';
import type { ControllerObserver } from '../observability/observer.ts';
import type { JobStore } from '../store/store.ts';
import type { Claims } from './claims.ts';
import type { HostState } from './host-state.ts';
import type { JobBook } from './jobs.ts';
import type { Leases } from './leases.ts';
import type { Liveness } from './liveness.ts';
import type { Scheduler } from './scheduler.ts';
import type { Waiters } from './waiters.ts';

/** Counters for tests and benchmarks (the Controller's `stats`). */
export interface LoopStats {
  reconciles: number;
  launches: number;
  observes: number;
}

/**
 * spec.preflight's network round on a gang's hosts, from its rendezvous port up (the CLI runs `ugro
 * doctor`'s listen/connect round over the SSH pool): the pairs that failed, none when all reach each
 * other. Leaves nothing listening on the hosts.
 */
export type PreflightFn = (hosts: Host[], o: { port: number }) => Promise<PreflightPair[]>;

export interface LoopContext {
  readonly cluster: Cluster;
  /** Every host, a Slurm cluster's login host too: observed, leased and watched like the others. */
  readonly hosts: Host[];
  host(name: string): Host | undefined;
  /** Who this controller is, in host leases and run metadata. */
  readonly owner: string;
  readonly store: JobStore;
  readonly runtime: Backend;
  readonly log: Logger;
  readonly now: () => Date;
  readonly observer?: ControllerObserver;
  /** What each host showed last, and this controller's parts on it. */
  readonly hostsState: HostState;
  /** Hosts and ports of launches in flight. */
  readonly claims: Claims;
  readonly waiters: Waiters;
  readonly leases: Leases;
  readonly liveness: Liveness;
  /** One placement plan over the whole queue: invalidate() whenever something it reads changed. */
  readonly scheduler: Scheduler;
  readonly jobs: JobBook;
  readonly stats: LoopStats;
  /** Reconcile `name` (again) through the work queue. */
  enqueue(name: string): void;
  /** Hosts may have come free: reconcile the jobs waiting for hosts (`from`: the job whose change it was). */
  kickQueued(from?: string): void;
  /** Log a warning once per key (a bad file name, a run directory that fails validation). */
  warnOnce(key: string, msg: string, fields: Record<string, unknown>): void;
  /** The stop grace of a job that names none. */
  readonly graceSeconds: number;
  readonly rdzvTimeoutSeconds: number;
  /** Who may change what (core/authorize.ts); absent when the controller knows no account database. */
  readonly auth?: { access: Access; unsignedOwner: string };
  /** The cluster file's users: section when it sets any quota (placement skips quotas otherwise). */
  readonly quotaUsers?: UsersSettings;
  /** Runs spec.preflight (launcher.ts); absent: jobs asking for one start without it (unit tests). */
  readonly preflight?: PreflightFn;
}
