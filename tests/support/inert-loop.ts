/**
 * Controller options for a loop driven only by the test: no fs watch, no jobs-dir lock, no
 * periodic timer (resync, health) and no delayed requeue ever fires; only enqueues reconcile.
 */
export const inertLoop = {
  watch: async () => ({ close: async () => {} }),
  lock: async () => ({ release: async () => {} }),
  every: () => () => {},
  queueTimers: { setTimeout: () => ({ unref() {} }) as unknown as NodeJS.Timeout, clearTimeout: () => {} },
};
