/**
 * One ssh connection to the git server, shared by every fetch (OpenSSH's ControlMaster): a fetch
 * then costs the git protocol's round trips, not a new handshake and login each time (about 200 ms
 * of the ~210 ms of an idle fetch on the lab). The socket lives in the controller's private dir
 * (jobs/.ugro/git/mux/, 0700; store/private.ts allows sockets there and nowhere else) and is
 * named by everything that decides whom the connection trusts, so a changed pin never rides on a
 * connection made under the old one. The master runs in its own session (ssh detaches it): the
 * source ends it when it stops; one left by a controller killed with -9 exits after
 * ControlPersist idle seconds.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type GitUrl, parseGitUrl } from '../../config/gitops.ts';
import { lstatOrUndefined, readRegularFile } from '../store/files.ts';
import type { GitAuth } from './hardening.ts';

/**
 * The control socket for this remote, or undefined (no sharing) when the URL is not ssh or the
 * path would be too long for a socket or hold a character ssh would expand (%, ~).
 */
function muxSocket(muxDir: string, url: GitUrl, auth: GitAuth, knownHostsText: string): string | undefined {
  if (url.kind !== 'ssh') return undefined;
  const id = createHash('sha256')
    .update(JSON.stringify([url.host, url.port ?? 22, url.user ?? '', auth.identityFile ?? '', auth.knownHosts]))
    .update(knownHostsText)
    .digest('hex')
    .slice(0, 16);
  const path = join(muxDir, id);
  // sun_path is 108 bytes, and ssh binds a longer temporary name first.
  return path.length <= 80 && /^[A-Za-z0-9_./-]+$/.test(path) ? path : undefined;
}

/** How long an idle master stays: past the next poll, within bounds. */
export function persistSeconds(intervalMs: number): number {
  return Math.min(600, Math.max(60, Math.ceil((2 * intervalMs) / 1000) + 10));
}

export class SshMux {
  private socket?: string;

  constructor(
    readonly dir: string,
    private readonly url: string,
    private readonly auth: GitAuth,
    private readonly persist: number,
    private readonly baseEnv: NodeJS.ProcessEnv = process.env,
  ) {}

  /** The socket's directory, private (0700) whatever the umask. */
  async prepare(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
  }

  /** git's extra environment for one fetch: the socket for the pins as they are now (read each time). */
  async env(): Promise<NodeJS.ProcessEnv> {
    const u = parseGitUrl(this.url);
    if (!u.ok) return {};
    const pins = await readRegularFile(this.auth.knownHosts, 16 * 1024 * 1024);
    const sock = muxSocket(this.dir, u.value, this.auth, pins.ok ? pins.text : '');
    if (this.socket && this.socket !== sock) void this.exit(this.socket);
    this.socket = sock;
    return sock ? { UGRO_GIT_SSH_CONTROL: sock, UGRO_GIT_SSH_PERSIST: String(this.persist) } : {};
  }

  /** End the master, if one is running (the controller stops). */
  async stop(): Promise<void> {
    if (this.socket) await this.exit(this.socket);
  }

  private async exit(sock: string): Promise<void> {
    if (!(await lstatOrUndefined(sock))?.isSocket()) return;
    await new Promise<void>((resolve) => {
      const c = spawn('ssh', ['-F', '/dev/null', '-o', `ControlPath=${sock}`, '-O', 'exit', 'ugro-git'], {
        stdio: 'ignore',
        env: { PATH: this.baseEnv.PATH ?? '/usr/bin:/bin' },
        timeout: 5000,
      });
      c.on('error', () => resolve());
      c.on('close', () => resolve());
    });
  }
}
