/**
 * GitOps settings checked before git ever sees them (pure, shared by the cluster file's `gitops:`
 * section and `ugro controller --git`). A value that reaches git is an argument, never program
 * text, but git itself gives meaning to some shapes: a URL starting with "-" reads as an option,
 * `ext::cmd` runs a command, a refname with ".." or "@{" means something else. So each value
 * has to look like what it is, and anything else is refused with the rule it broke.
 */

/** Transports UGRO lets git use (git's protocol allow-list, GIT_ALLOW_PROTOCOL). */
export const GIT_PROTOCOLS = ['ssh', 'https', 'http', 'file'] as const;

export type GitUrlKind = 'ssh' | 'https' | 'http' | 'file';

export interface GitUrl {
  kind: GitUrlKind;
  /** Host for ssh/http(s) (no brackets), '' for file. */
  host: string;
  /** Port for ssh/http(s) when written in the URL. */
  port?: number;
  /** The user of ssh://user@host or user@host:path, or of https://user@host. */
  user?: string;
}

const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const USER = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/;

/** Parse a repository URL UGRO accepts, or say why not. */
export function parseGitUrl(url: string): { ok: true; value: GitUrl } | { ok: false; message: string } {
  const bad = (message: string) => ({ ok: false as const, message });
  if (!url) return bad('must not be empty');
  if (url.length > 1024) return bad('must be at most 1024 characters');
  if ([...url].some((c) => c <= ' ' || c === '\x7f')) return bad('must not contain spaces or control characters');
  if (url.startsWith('-')) return bad('must not start with "-" (git would read it as an option)');
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url))
    return bad('must not name a remote helper (transport::address): only ssh, https, http and file URLs');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(url);
  if (scheme) {
    const kind = scheme[1].toLowerCase();
    const rest = scheme[2];
    if (kind === 'file') {
      if (!rest.startsWith('/')) return bad('a file URL must be file:///absolute/path');
      return { ok: true, value: { kind: 'file', host: '' } };
    }
    if (kind !== 'ssh' && kind !== 'https' && kind !== 'http')
      return bad(`the ${kind}:// transport is not allowed: use ssh://, https://, http:// or file://`);
    const slash = rest.indexOf('/');
    const authority = slash < 0 ? rest : rest.slice(0, slash);
    if (slash < 0 || slash === rest.length - 1) return bad('must name a repository path after the host');
    const at = authority.lastIndexOf('@');
    const userinfo = at < 0 ? undefined : authority.slice(0, at);
    const hostport = at < 0 ? authority : authority.slice(at + 1);
    if (userinfo !== undefined) {
      if (userinfo.includes(':'))
        return bad(
          'must not carry a password or token: put the token in an environment variable (gitops.token_env, ' +
            'default UGRO_GIT_TOKEN); UGRO never writes it to disk',
        );
      if (!USER.test(userinfo)) return bad(`user ${JSON.stringify(userinfo)} is not a plain login name`);
    }
    const hp = /^(\[([^\]]+)\]|[^:]+)(?::(\d{1,5}))?$/.exec(hostport);
    if (!hp) return bad(`host ${JSON.stringify(hostport)} is not a host name or address`);
    const host = hp[2] ?? hp[1];
    if (hp[2] ? !IPV6.test(host) : !HOST.test(host))
      return bad(`host ${JSON.stringify(host)} is not a host name or address`);
    const port = hp[3] === undefined ? undefined : Number(hp[3]);
    if (port !== undefined && (port < 1 || port > 65535)) return bad(`port ${port} is out of range`);
    return { ok: true, value: { kind, host, ...(port ? { port } : {}), ...(userinfo ? { user: userinfo } : {}) } };
  }
  if (url.startsWith('/')) return { ok: true, value: { kind: 'file', host: '' } };
  // scp-like: [user@]host:path (git's rule: a colon before any slash).
  const scp = /^(?:([^@/:]+)@)?([^@/:[\]]+|\[[^\]]+\]):(.+)$/.exec(url);
  if (scp) {
    const user = scp[1];
    const host = scp[2].replace(/^\[|\]$/g, '');
    if (user !== undefined && !USER.test(user)) return bad(`user ${JSON.stringify(user)} is not a plain login name`);
    if (!HOST.test(host) && !IPV6.test(host)) return bad(`host ${JSON.stringify(host)} is not a host name or address`);
    if (scp[3].startsWith('-')) return bad('the repository path must not start with "-"');
    return { ok: true, value: { kind: 'ssh', host, ...(user ? { user } : {}) } };
  }
  return bad('must be an ssh://, user@host:path, https://, http:// or file:// URL, or an absolute path');
}

/** A branch name as UGRO accepts it (a strict subset of git's check-ref-format). */
export function checkBranch(branch: string): string | undefined {
  if (!branch) return 'must not be empty';
  if (branch.length > 200) return 'must be at most 200 characters';
  if (!/^[A-Za-z0-9._/-]+$/.test(branch)) return 'may only contain letters, digits and "._/-"';
  if (branch.startsWith('-') || branch.startsWith('/') || branch.endsWith('/') || branch.endsWith('.'))
    return 'must not start with "-" or "/", nor end with "/" or "."';
  if (branch.includes('..') || branch.includes('//') || branch.endsWith('.lock') || branch === 'HEAD')
    return 'is not a valid branch name (no "..", "//", ".lock" suffix, or HEAD)';
  if (branch.split('/').some((s) => s.startsWith('.'))) return 'no part of it may start with "."';
  return undefined;
}

/**
 * The jobs path inside the repository: relative, normalized, no "..": returned without a trailing
 * slash, '' for the repository root ("." or "/").
 */
export function normalizeRepoPath(path: string): { ok: true; value: string } | { ok: false; message: string } {
  const p = path.trim() === '' || path === '.' || path === './' || path === '/' ? '' : path;
  if (p.length > 512) return { ok: false, message: 'must be at most 512 characters' };
  if (p.startsWith('/')) return { ok: false, message: 'must be relative to the repository root (no leading "/")' };
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  for (const s of parts) {
    if (s === '..') return { ok: false, message: 'must not contain ".."' };
    if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(s))
      return { ok: false, message: `part ${JSON.stringify(s)} may only contain letters, digits and "._-"` };
  }
  return { ok: true, value: parts.join('/') };
}
