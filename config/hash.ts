/**
 * Content hashes of files and trees: Pulumi `triggers` (infra/) and the controller's script
 * sync marker use the same ones, so a changed file changes its hash, and only then.
 * Deterministic: files sorted by byte order of their path, no timestamps.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hash of a file's bytes, or undefined when it does not exist. */
export function fileSha256(path: string): string | undefined {
  return existsSync(path) ? sha256(readFileSync(path)) : undefined;
}

/** One file of a tree to deploy: path relative to the tree root (always with `/`). */
export interface TreeFile {
  path: string;
  sha256: string;
  /** Octal mode to give it on the host: executable on this machine -> 755, else 644. */
  mode: '755' | '644';
  size: number;
}

export interface TreeManifest {
  /** Absolute local directory (it may not exist: then `files` is empty). */
  root: string;
  files: TreeFile[];
  /** sha256 over every file's path, mode and content hash: the trigger for this tree. */
  hash: string;
}

/** Names never deployed: hidden files (our markers live there), Python caches. */
export function skippedName(name: string): boolean {
  return name.startsWith('.') || name === '__pycache__' || name.endsWith('.pyc');
}

/**
 * Walk `root` and describe every regular file (symlinks to files are followed).
 * `exclude` gets the relative path of each entry (directories without a trailing slash).
 */
export function readTree(root: string, exclude: (relPath: string) => boolean = () => false): TreeManifest {
  const files: TreeFile[] = [];
  const walk = (dir: string, rel: string) => {
    for (const ent of readdirSync(dir, { withFileTypes: true })) {
      if (skippedName(ent.name)) continue;
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (exclude(r)) continue;
      const abs = join(dir, ent.name);
      const st = statSync(abs);
      if (st.isDirectory()) walk(abs, r);
      else if (st.isFile()) {
        const data = readFileSync(abs);
        files.push({ path: r, sha256: sha256(data), mode: st.mode & 0o111 ? '755' : '644', size: data.length });
      }
    }
  };
  if (existsSync(root) && statSync(root).isDirectory()) walk(root, '');
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { root, files, hash: treeHash(files) };
}

function treeHash(files: readonly TreeFile[]): string {
  return sha256(files.map((f) => `${f.path}\0${f.mode}\0${f.sha256}\n`).join(''));
}
