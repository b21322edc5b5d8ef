/** TrainingJob status: controller-owned, written to jobs/<name>.status.yaml, rebuilt from observation. */
export type Phase = 'Queued' | 'Starting' | 'Running' | 'Succeeded' | 'Failed' | 'Cancelled' | 'Suspended' | 'Invalid';
export const TERMINAL_PHASES: Phase[] = ['Succeeded', 'Failed', 'Cancelled', 'Invalid'];

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface NodeStatus {
  host: string;
  nodeRank: number;
  globalRanks: number[];
  pid?: number;
  state: 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Unknown' | 'Missing';
  exitCode?: number;
}

export interface JobStatus {
  phase: Phase;
  reason?: string;
  message?: string;
  /** Bumped each time the spec (its hash) changes. */
  observedGeneration: number;
  specHash?: string;
  attempt: number;
  runId?: string;
  rdzvEndpoint?: string;
  nodes: NodeStatus[];
  createdAt: string;
  startTime?: string;
  completionTime?: string;
  exitCode?: number;
  failedRank?: number;
  failedHost?: string;
  logTail?: string[];
  progress?: Record<string, unknown>;
  conditions: Condition[];
}

/** Set a condition; lastTransitionTime only moves when its status changes. */
export function setCondition(list: Condition[], c: Omit<Condition, 'lastTransitionTime'>, now: string): Condition[] {
  const prev = list.find((x) => x.type === c.type);
  const next: Condition = {
    ...c,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
  };
  return [...list.filter((x) => x.type !== c.type), next].sort((a, b) => a.type.localeCompare(b.type));
}
