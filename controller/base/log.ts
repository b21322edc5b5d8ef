/** Structured logs (docs/conventions.md, "Logs"): a fixed message plus fields, one JSON object per line on stderr. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function jsonLogger(
  write: (s: string) => void = (s) => process.stderr.write(`${s}\n`),
  now: () => Date = () => new Date(),
): Logger {
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    write(JSON.stringify({ time: now().toISOString(), level, msg, ...fields }));
  return { info: log('info'), warn: log('warn'), error: log('error') };
}
