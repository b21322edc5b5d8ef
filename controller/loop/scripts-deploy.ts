/**
 * Sends the local scripts/ to a host before a `script:` job runs there: the tree's content hash
 * (hashed again only when a file changed) and one sync per host per hash.
 */
import { type Dirent, readdirSync, statSync } from 'node:fs';
import type { Host } from '../../config/cluster.ts';
import { readTree, skippedName } from '../../config/hash.ts';
import type { ScriptDeploy } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';

export class ScriptsDeploy {
  private readonly synced = new Map<string, string>();
  private cached?: { sig: string; hash: string };

  constructor(
    private readonly runtime: ScriptDeploy,
    private readonly log: Logger,
    /** The local scripts/ (options, the inventory's local.scripts, else the install's). */
    private readonly dir: () => string,
  ) {}

  /** Whether `h` already has the scripts of content hash `hash` (deployed by this controller). */
  has(h: Host, hash: string): boolean {
    return this.synced.get(h.name) === hash;
  }

  /**
   * The content hash of the local scripts/, read and hashed again only when a file in it changed
   * (a walk of stat signatures: inode, size, mtime and ctime of every file, as readTree sees them).
   */
  hash(): string {
    const dir = this.dir();
    const sig = treeSignature(dir);
    if (this.cached?.sig !== sig) this.cached = { sig, hash: readTree(dir).hash };
    return this.cached.hash;
  }

  /** Deploy scripts/ to a host when its content hash differs from what the host has. */
  async sync(h: Host, hash: string): Promise<void> {
    if (this.synced.get(h.name) === hash) return;
    const dir = this.dir();
    if (await this.runtime.syncScripts(h, dir, hash))
      this.log.info('deployed scripts', { host: h.name, hash: hash.slice(0, 12) });
    this.synced.set(h.name, hash);
  }
}

/**
 * A cheap signature of the tree readTree would hash: every file it would read (same skipped names,
 * symlinks followed) with its inode, size, mtime and ctime. Any write to a file changes its ctime.
 */
function treeSignature(root: string): string {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let ents: Dirent[];
    try {
      ents = readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      out.push(`!${rel}:${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      return;
    }
    for (const ent of ents) {
      if (skippedName(ent.name)) continue;
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      const st = statSync(`${dir}/${ent.name}`, { bigint: true, throwIfNoEntry: false });
      if (!st) out.push(`?${r}`);
      else if (st.isDirectory()) walk(`${dir}/${ent.name}`, r);
      else out.push(`${r}\0${st.ino}:${st.size}:${st.mode}:${st.mtimeNs}:${st.ctimeNs}`);
    }
  };
  walk(root, '');
  return out.sort().join('\n');
}
