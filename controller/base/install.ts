/**
 * The install: where UGRO's own files are (scripts/runtime/ for the hosts, the dashboard's assets). The one
 * helper that finds it, from the sources and from a bundle in dist/ alike: the walk is by content, not by
 * depth, so moving a module (or bundling it into dist/) changes nothing.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UgroError } from '../../config/errors.ts';

/** UGRO's own files are missing: the install is incomplete (reinstall it, or run from a full checkout). */
export class InstallError extends UgroError {}

/**
 * The first directory above `from` (a file URL or path; default: this module) holding
 * `scripts/runtime/lib.sh`: the repository root, for the sources and for dist/ one level below it.
 */
export function installRoot(from: string | URL = import.meta.url): string {
  const start = typeof from === 'string' && !from.startsWith('file:') ? from : fileURLToPath(from);
  for (let d = dirname(start); ; d = dirname(d)) {
    if (existsSync(join(d, 'scripts', 'runtime', 'lib.sh'))) return d;
    if (dirname(d) === d) break;
  }
  throw new InstallError(`scripts/runtime/lib.sh not found in any directory above ${start}`);
}

/** scripts/: what the controller sends to each host (its runtime/ and what else lives there). */
export const scriptsDir = (root: string = installRoot()): string => join(root, 'scripts');

/** scripts/runtime/: the shell UGRO runs on a host. */
export const runtimeDir = (root: string = installRoot()): string => join(root, 'scripts', 'runtime');

/** The dashboard's own files (dashboard.js, dashboard.css); an InstallError when they are not there. */
export function assetsDir(root: string = installRoot()): string {
  const dir = join(root, 'controller', 'observability', 'web', 'assets');
  if (!existsSync(join(dir, 'dashboard.js')))
    throw new InstallError(`controller/observability/web/assets not found in ${root}`);
  return dir;
}
