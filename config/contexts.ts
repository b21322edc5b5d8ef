/**
 * The CLI's contexts file (`${XDG_CONFIG_HOME:-~/.config}/ugro/contexts.yaml`): named controller
 * hosts that `ugro --context NAME …` runs the command on, over SSH, the way Docker contexts do
 * (`DOCKER_HOST=ssh://user@host`). Schema and pure parsing only; the CLI reads and writes the file
 * (controller/cli/remote/). Field names are camelCase like the TrainingJob's: this is the user's
 * own file, not the seed's cluster file.
 *
 *   current: lab                  # what runs remotely without --context (`ugro context use`)
 *   contexts:
 *     lab:
 *       host: ssh://ob@gpu-master:22
 *       knownHosts: ~/.ssh/known_hosts     # the host's key must be pinned here already
 *       identityFile: ~/.ssh/id_ed25519    # optional (default: ssh's own keys and agent)
 *       ugro: ugro                         # the remote command, as words (default: ugro)
 *       cluster: /home/master/ugro/config/cluster.yaml   # optional: passed as --cluster
 *       jobs: /home/master/ugro/jobs                      # optional: passed as --jobs
 */
import { z } from 'zod';
import type { FieldIssue } from './errors.ts';
import { DNS1123_LABEL } from './names.ts';
import { type ParseResult, parseYamlWith } from './parse.ts';

/** `--context local` (and `ugro context use local`): run here, whatever else is set. */
export const LOCAL_CONTEXT = 'local';

/** Where a command runs: the parts of `ssh://[user@]host[:port]`. */
export interface SshTarget {
  user?: string;
  host: string;
  port: number;
}

const USER = /^[A-Za-z_][A-Za-z0-9._-]{0,31}$/;
// A DNS name or IPv4 address; never starting with '-' (ssh would read an option).
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$/;
const IPV6 = /^\[([0-9A-Fa-f:.]{2,45})\]$/;

/** `ssh://[user@]host[:port]`, with the reason it is not one. */
export function parseSshHost(raw: string): { ok: true; value: SshTarget } | { ok: false; message: string } {
  const bad = (why: string) => ({
    ok: false as const,
    message:
      `${why} (got ${JSON.stringify(raw.slice(0, 200))}; ` +
      'expected ssh://[user@]host[:port], e.g. ssh://ob@gpu-master)',
  });
  const m = /^ssh:\/\/(?:([^@/]*)@)?(\[[^\]]*\]|[^:/]*)(?::(\d{1,5}))?$/.exec(raw);
  if (!m) return bad(raw.startsWith('ssh://') ? 'not a host: no path or query may follow it' : 'not an ssh:// URL');
  const [, user, hostRaw, portRaw] = m;
  if (user !== undefined && !USER.test(user)) return bad(`"${user}" is not a login name`);
  const v6 = IPV6.exec(hostRaw);
  const host = v6 ? v6[1] : hostRaw;
  if (!v6 && !HOST.test(host)) return bad(`"${hostRaw}" is not a host name or address`);
  const port = portRaw === undefined ? 22 : Number(portRaw);
  if (!(port >= 1 && port <= 65_535)) return bad(`port ${portRaw} is not 1..65535`);
  return { ok: true, value: { ...(user !== undefined ? { user } : {}), host, port } };
}

/** `ssh://user@host:port` as written back (IPv6 in brackets). */
export function formatSshHost(t: SshTarget): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `ssh://${t.user ? `${t.user}@` : ''}${host}${t.port === 22 ? '' : `:${t.port}`}`;
}

/** A path on this machine: absolute or ~/…, no NUL, not an option. */
const localPath = z
  .string()
  .min(1, 'must not be empty')
  .max(4096)
  .refine((p) => p.startsWith('/') || p.startsWith('~/'), 'must be an absolute path or start with ~/')
  .refine((p) => !p.includes('\0'), 'must not contain NUL');

/** A path on the controller host: passed as one quoted argument, so any text but NUL and a leading '-'. */
const remotePath = z
  .string()
  .min(1, 'must not be empty')
  .max(4096)
  .refine((p) => !p.startsWith('-') && !p.includes('\0'), 'must be a path (not starting with "-", no NUL)');

const word = z
  .string()
  .min(1)
  .max(4096)
  .refine((w) => !w.includes('\0'), 'must not contain NUL');

export const contextSchema = z.strictObject({
  host: z.string().superRefine((s, ctx) => {
    const r = parseSshHost(s);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message });
  }),
  knownHosts: localPath.optional(),
  identityFile: localPath.optional(),
  /** The remote command: a string split at whitespace, or a list of words (a path with spaces). */
  ugro: z.union([z.string().regex(/\S/, 'must name a command'), z.array(word).min(1).max(32)]).optional(),
  cluster: remotePath.optional(),
  jobs: remotePath.optional(),
  /** How long an idle shared connection stays (default 60); 0: a new connection every time. */
  controlPersistSeconds: z.number().int().min(0).max(3600).optional(),
});

export type ContextEntry = z.output<typeof contextSchema>;

const contextName = z
  .string()
  .max(63, 'a context name must be at most 63 characters')
  .regex(DNS1123_LABEL, 'a context name must be a DNS-1123 label: lowercase letters, digits and "-" (e.g. "lab")')
  .refine((n) => n !== LOCAL_CONTEXT, `"${LOCAL_CONTEXT}" is reserved: it means "run here"`);

export const contextsFileSchema = z
  .strictObject({
    current: contextName.optional(),
    contexts: z.record(z.string(), contextSchema).default({}),
  })
  .superRefine((f, ctx) => {
    for (const name of Object.keys(f.contexts)) {
      const r = contextName.safeParse(name);
      if (!r.success) ctx.addIssue({ code: 'custom', path: ['contexts', name], message: r.error.issues[0].message });
    }
    if (f.current !== undefined && !Object.hasOwn(f.contexts, f.current))
      ctx.addIssue({
        code: 'custom',
        path: ['current'],
        message: `no context named "${f.current}" (add it with \`ugro context add\` or run \`ugro context use local\`)`,
      });
  });

export type ContextsFile = z.output<typeof contextsFileSchema>;

/** The file's text, validated; an empty file is no contexts. */
export function parseContexts(text: string): ParseResult<ContextsFile> {
  if (!text.trim()) return { ok: true, value: { contexts: {} } };
  const r = parseYamlWith(text, contextsFileSchema);
  return r.ok ? { ok: true, value: r.value } : { ok: false, issues: r.issues };
}

/** A context name from the command line or UGRO_CONTEXT, checked like the file's keys. */
export function checkContextName(name: string): FieldIssue | undefined {
  if (name === LOCAL_CONTEXT) return undefined;
  const r = contextName.safeParse(name);
  return r.success ? undefined : { path: '', message: r.error.issues[0].message };
}

/** The remote command's words: `ugro` split at whitespace, or the list as written. */
export function ugroWords(e: Pick<ContextEntry, 'ugro'>): string[] {
  if (e.ugro === undefined) return ['ugro'];
  return typeof e.ugro === 'string' ? e.ugro.trim().split(/\s+/) : [...e.ugro];
}
