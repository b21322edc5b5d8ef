/**
 * What git may run, read and where it may send credentials: decided here, on every command, never
 * by the repository or the environment. Git chooses programs from its config (core.sshCommand,
 * core.askPass, gpg.*.program, core.fsmonitor, core.hooksPath, credential.helper,
 * core.alternateRefsCommand, remote.<url>.uploadpack ...) and destinations too (url.*.insteadOf,
 * http.proxy, include.path pulling in more of it). So:
 *   - no system or user config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null) and an
 *     environment built from nothing but PATH (gitEnv);
 *   - every program-choosing key is set on the command line (SAFE_CONFIG, helperConfig): `-c`
 *     beats any config file;
 *   - the clone's own config, the one file `-c` cannot neutralize wholesale (url.<any>.insteadOf,
 *     include.path), is UGRO's fixed text, checked before every fetch and rewritten if it differs,
 *     and the files that would point git at other config or objects (commondir, alternates) are
 *     removed (secureRepo);
 *   - the directory it all lives in is private to the controller's user (store/private.ts).
 * ssh runs through a fixed wrapper (OpenSSH with UGRO's pins, optionally reusing one connection);
 * an https token is given by a fixed askpass only to the prompt for the configured host, and
 * redirects are not followed, so the token never goes to a host a redirect names.
 */
import { chmod, lstat, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GIT_PROTOCOLS } from '../../config/gitops.ts';
import { shQuote } from '../../config/quote.ts';
import { writeFileAtomic } from '../store/files.ts';

/**
 * GIT_SSH: OpenSSH with UGRO's pins. Fixed text: every value comes from the environment. With
 * UGRO_GIT_SSH_CONTROL, the connection is shared (ControlMaster) through a socket in the
 * controller's private dir, so a fetch does not pay for a new ssh handshake each time.
 */
const SSH_WRAPPER = `#!/bin/sh
# Written by UGRO: git's ssh (GIT_SSH) for \`ugro controller --git\`. OpenSSH with UGRO's pinned
# known_hosts and key only; no ssh config is read. Paths come from the environment, never from here.
set -eu
if [ -n "\${UGRO_GIT_SSH_IDENTITY:-}" ]; then
  set -- -o IdentitiesOnly=yes -i "$UGRO_GIT_SSH_IDENTITY" "$@"
fi
if [ -n "\${UGRO_GIT_SSH_CONTROL:-}" ]; then
  set -- -o ControlMaster=auto -o "ControlPath=$UGRO_GIT_SSH_CONTROL" \\
    -o "ControlPersist=\${UGRO_GIT_SSH_PERSIST:-60}" "$@"
fi
exec ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UpdateHostKeys=no \\
  -o CheckHostIP=no -o GlobalKnownHostsFile=/dev/null -o "UserKnownHostsFile=$UGRO_GIT_SSH_KNOWN_HOSTS" \\
  -o "ConnectTimeout=\${UGRO_GIT_SSH_CONNECT_TIMEOUT:-5}" -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \\
  -o LogLevel=ERROR "$@"
`;

/**
 * GIT_ASKPASS: the user name, then the token, from git's environment, and only to git's prompts
 * for the configured origin (git asks "Username for 'https://host': " and "Password for
 * 'https://user@host': "); any other prompt (a redirect to another host) gets nothing.
 */
const ASKPASS = `#!/bin/sh
# Written by UGRO: git's askpass for https with a token. The token is in git's environment only,
# and is answered only to a prompt for the origin UGRO was configured with.
case "\${1:-}" in
  "Username for '\${UGRO_GIT_ASKPASS_ORIGIN:-}': ") printf '%s\\n' "\${UGRO_GIT_USERNAME:-x-access-token}" ;;
  "Password for '\${UGRO_GIT_ASKPASS_USER_ORIGIN:-}': ") printf '%s\\n' "\${UGRO_GIT_PASSWORD:-}" ;;
  *) printf 'ugro askpass: not answering "%s": not the configured origin\\n' "\${1:-}" >&2; exit 1 ;;
esac
`;

/** The clone's config: what `git init --bare` writes, and nothing anyone can add. */
const REPO_CONFIG = '[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n';

/** Files in a git dir that point git at other config or objects; a bare clone of UGRO has none. */
const FOREIGN = ['commondir', 'config.worktree', 'objects/info/alternates', 'objects/info/http-alternates'];

export interface GitAuth {
  /** known_hosts with the git server's pinned key (ssh). */
  knownHosts: string;
  identityFile?: string;
  /** Let ssh use the agent (SSH_AUTH_SOCK is passed through). */
  useAgent: boolean;
  connectTimeoutSeconds: number;
  /** https: the token and the user name sent with it. */
  token?: string;
  username?: string;
  /** https: `scheme://host[:port]` of the URL, the only origin the token is given to. */
  origin?: string;
}

export interface GitHelpers {
  ssh: string;
  askpass: string;
}

/** Write the wrapper scripts into `dir` (0700) unless they are already there, byte for byte. */
export async function writeGitHelpers(dir: string): Promise<GitHelpers> {
  const out = { ssh: join(dir, 'ssh'), askpass: join(dir, 'askpass') };
  for (const [path, text] of [
    [out.ssh, SSH_WRAPPER],
    [out.askpass, ASKPASS],
  ] as const) {
    const cur = await readFile(path, 'utf8').catch(() => undefined);
    const st = await lstat(path).catch(() => undefined);
    if (cur === text && st?.isFile() && (st.mode & 0o777) === 0o700) continue;
    await writeFileAtomic(path, text, 0o700);
    await chmod(path, 0o700);
  }
  return out;
}

/** `scheme://host[:port]` of an http(s) URL as git names it in a prompt (no user, no path). */
export function originOf(url: string): string | undefined {
  const m = /^(https?):\/\/([^/]+)\//i.exec(url);
  if (!m) return undefined;
  const authority = m[2].slice(m[2].lastIndexOf('@') + 1);
  return `${m[1]}://${authority}`;
}

/**
 * git's environment, built from nothing but PATH: this process's own GIT_* variables (GIT_DIR,
 * GIT_SSH_COMMAND, …) never reach it. GIT_SSH_COMMAND is set to the wrapper: it beats any
 * core.sshCommand a config file could hold.
 */
export function gitEnv(
  helpers: GitHelpers,
  home: string,
  auth: GitAuth,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ALLOW_PROTOCOL: GIT_PROTOCOLS.join(':'),
    GIT_LITERAL_PATHSPECS: '1',
    GIT_SSH: helpers.ssh,
    GIT_SSH_COMMAND: shQuote(helpers.ssh),
    GIT_SSH_VARIANT: 'ssh',
    GIT_ASKPASS: helpers.askpass,
    UGRO_GIT_SSH_KNOWN_HOSTS: auth.knownHosts,
    UGRO_GIT_SSH_CONNECT_TIMEOUT: String(Math.max(1, Math.round(auth.connectTimeoutSeconds))),
  };
  if (auth.identityFile) env.UGRO_GIT_SSH_IDENTITY = auth.identityFile;
  if (auth.useAgent && base.SSH_AUTH_SOCK) env.SSH_AUTH_SOCK = base.SSH_AUTH_SOCK;
  if (auth.token && auth.origin) {
    const user = auth.username ?? 'x-access-token';
    env.UGRO_GIT_PASSWORD = auth.token;
    env.UGRO_GIT_USERNAME = user;
    env.UGRO_GIT_ASKPASS_ORIGIN = auth.origin;
    env.UGRO_GIT_ASKPASS_USER_ORIGIN = auth.origin.replace('://', `://${user}@`);
  }
  return env;
}

/**
 * Set on every git command: each key that could make git run a program, read other config or
 * follow a redirect, pinned to a harmless value. `false`/`true` are the programs of that name.
 */
const SAFE_CONFIG: Record<string, string> = {
  'core.hooksPath': '/dev/null',
  'core.fsmonitor': 'false',
  'core.alternateRefsCommand': 'true',
  'core.sharedRepository': '0644',
  'credential.helper': '',
  'gpg.program': 'false',
  'gpg.openpgp.program': 'false',
  'gpg.x509.program': 'false',
  'gpg.ssh.program': 'ssh-keygen',
  'gpg.ssh.revocationFile': '/dev/null',
  'log.showSignature': 'false',
  'http.followRedirects': 'false',
  'submodule.recurse': 'false',
  'fetch.recurseSubmodules': 'false',
  'maintenance.auto': 'false',
  'gc.auto': '0',
  'gc.autoDetach': 'false',
  'protocol.version': '2',
  // Every fetch is kept as one pack (objects/pack/tmp_pack_* while it arrives): what the size
  // cap watches and what a failed fetch leaves to clean (housekeeping.ts).
  'fetch.unpackLimit': '1',
  'fetch.showForcedUpdates': 'false',
  'fetch.writeCommitGraph': 'false',
};

/** `-c key=value` for every command: SAFE_CONFIG and the helpers named in `env` (gitEnv's). */
export function configArgs(env: NodeJS.ProcessEnv): string[] {
  const cfg: Record<string, string> = { ...SAFE_CONFIG };
  if (env.GIT_SSH) cfg['core.sshCommand'] = shQuote(env.GIT_SSH);
  if (env.GIT_ASKPASS) cfg['core.askPass'] = env.GIT_ASKPASS;
  return Object.entries(cfg).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
}

/**
 * Bring a clone's config back to REPO_CONFIG and remove the files that would make git read other
 * config or objects. Returns what it had to repair (empty when nothing was wrong).
 */
export async function secureRepo(dir: string): Promise<string[]> {
  const repaired: string[] = [];
  const config = join(dir, 'config');
  const cur = await readFile(config, 'utf8').catch(() => undefined);
  const st = await lstat(config).catch(() => undefined);
  if (cur !== REPO_CONFIG || !st?.isFile()) {
    if (cur !== undefined || st) repaired.push('config');
    await writeFileAtomic(config, REPO_CONFIG);
  }
  for (const f of FOREIGN) {
    const p = join(dir, f);
    if (await lstat(p).catch(() => undefined)) {
      repaired.push(f);
      await rm(p, { recursive: true, force: true });
    }
  }
  return repaired;
}
