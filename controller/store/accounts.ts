/**
 * Who a file's owner is: the uid the OS reports, named by the machine's account database
 * (/etc/passwd, read like any other hostile file: a regular file, size-capped, each line checked).
 * The jobs directory is shared by Unix accounts; the account that wrote a job file is the only
 * identity UGRO trusts for it (issue 17: no new secrets).
 */
import { readRegularFile } from './files.ts';

/** A login name as useradd(8) accepts it (and no longer than the schema's 32). */
const LOGIN = /^[a-z_][a-z0-9_.-]{0,31}\$?$/;

export interface Accounts {
  /** The login name of a uid, or `uid 1234` for an account the database does not name. */
  nameOf(uid: number): Promise<string>;
}

/** Parse passwd(5) text: uid -> name, the first entry of a uid winning (as getpwuid does). */
export function parsePasswd(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || !LOGIN.test(f[0]) || !/^\d{1,10}$/.test(f[2])) continue;
    const uid = Number(f[2]);
    if (!out.has(uid)) out.set(uid, f[0]);
  }
  return out;
}

/** Accounts from a passwd file, re-read only when it changes (inode, size, mtime). */
export class PasswdAccounts implements Accounts {
  private cache?: { key: string; byUid: Map<number, string> };

  constructor(private readonly file = '/etc/passwd') {}

  async nameOf(uid: number): Promise<string> {
    const r = await readRegularFile(this.file, 16 * 1024 * 1024, this.cache?.key);
    if (r.ok && r.key !== this.cache?.key) this.cache = { key: r.key, byUid: parsePasswd(r.text) };
    return this.cache?.byUid.get(uid) ?? `uid ${uid}`;
  }
}
