/** A Logger that keeps its lines in memory, for tests that assert what the controller logged. */
import type { Logger } from '../../controller/base/log.ts';

export interface LogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export function memoryLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    lines.push({ level, msg, fields });
  };
  return { lines, info: log('info'), warn: log('warn'), error: log('error') };
}
