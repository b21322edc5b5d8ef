/** The `ugro controller` flags of the dashboard, /metrics and the health cadence (registered cheaply). */
import type { Command } from 'commander';
import { intFlag } from './args.ts';

export interface WebFlags {
  health: string;
  http: string;
  httpToken?: string;
  httpTokenFile?: string;
}

export function addWebFlags(cmd: Command): void {
  cmd
    .option('--health <seconds>', 'health probe period, and so GPU telemetry samples (1..3600)', '30')
    .option('--http <host:port>', 'serve the dashboard and /metrics here ("off": not at all)', '127.0.0.1:8686')
    .option('--http-token <token>', 'a token every HTTP request must carry (needed beyond loopback)')
    .option('--http-token-file <file>', 'the same token, read from a file (kept out of `ps`)');
}

/** `--health` in ms. */
export function healthEveryMs(o: WebFlags): number {
  return intFlag('--health', o.health, 1, 3600) * 1000;
}
