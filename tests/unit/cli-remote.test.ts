/**
 * Remote use (issue 17, item 4) without a network: the contexts file's schema and messages, which
 * context a command runs on (flag > UGRO_HOST > UGRO_CONTEXT > current), the remote argv (context
 * flags out, `--context local` in, `apply -f FILE` as `-f -`), the ssh argv and the one quoted
 * command string ssh sends (run through a real sh here: each hostile value arrives as one argument).
 * The lab test tests/lab/remote.test.ts runs it over real ssh.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOCAL_CONTEXT, parseContexts, parseSshHost } from '../../config/contexts.ts';
import { ForbiddenError } from '../../config/errors.ts';
import { EXIT, main } from '../../controller/cli/main.ts';
import {
  chooseWhere,
  planRemote,
  LOCAL_CONTEXT as SELECT_LOCAL,
  splitArgv,
} from '../../controller/cli/remote/select.ts';
import { type Remote, remoteCommand, sshArgv } from '../../controller/cli/remote/ssh.ts';

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'ugro-remote-unit-'));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

async function ugro(args: string[], env: Record<string, string> = {}, stdin?: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    ['node', 'ugro', ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
    { HOME: home, XDG_CACHE_HOME: join(home, 'cache'), ...env },
    stdin === undefined
      ? {}
      : {
          stdin: async function* () {
            yield Buffer.from(stdin);
          },
        },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ssh:// hosts', () => {
  it('user, host, port; IPv6 in brackets; defaults to port 22', () => {
    expect(parseSshHost('ssh://ob@gpu-master:2222')).toEqual({
      ok: true,
      value: { user: 'ob', host: 'gpu-master', port: 2222 },
    });
    expect(parseSshHost('ssh://gpu-master')).toEqual({ ok: true, value: { host: 'gpu-master', port: 22 } });
    expect(parseSshHost('ssh://ob@[fe80::1]:22')).toMatchObject({ ok: true, value: { host: 'fe80::1' } });
  });

  it.each([
    ['http://gpu-master', 'not an ssh:// URL'],
    ['ssh://ob@gpu-master/path', 'no path'],
    ['ssh://-oProxyCommand=x', 'is not a host name'],
    ['ssh://o;b@gpu-master', 'is not a login name'],
    ['ssh://ob@gpu-master:70000', 'port 70000'],
  ])('refuses %s, saying why and what is expected', (raw, why) => {
    const r = parseSshHost(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.message).toContain(why);
      expect(r.message).toContain('expected ssh://[user@]host[:port]');
    }
  });
});

describe('the contexts file', () => {
  it('a valid file', () => {
    const r = parseContexts(
      'current: lab\ncontexts:\n  lab:\n    host: ssh://ob@gpu-master\n    knownHosts: ~/.ssh/known_hosts\n' +
        '    ugro: [node, /opt/ugro dir/bin/ugro.mjs]\n    jobs: /srv/jobs\n',
    );
    expect(r).toMatchObject({ ok: true, value: { current: 'lab', contexts: { lab: { jobs: '/srv/jobs' } } } });
  });

  it('every problem with its line and field: a bad name, host, path, an unknown field, a current not defined', () => {
    const r = parseContexts(
      [
        'current: nope',
        'contexts:',
        '  Lab_1:',
        '    host: ssh://ob@gpu-master',
        '  lab:',
        '    host: tcp://gpu-master',
        '    knownHosts: relative/known_hosts',
        '    identity: ~/.ssh/id',
        '    jobs: --evil',
      ].join('\n'),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const issues = r.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^1: current: no context named "nope"/),
        expect.stringMatching(/^4: contexts\.Lab_1: a context name must be a DNS-1123 label/),
        expect.stringMatching(/^6: contexts\.lab\.host: not an ssh:\/\/ URL/),
        expect.stringMatching(/^7: contexts\.lab\.knownHosts: must be an absolute path or start with ~\//),
        expect.stringMatching(/^8: contexts\.lab\.identity: unknown field/),
        expect.stringMatching(/^9: contexts\.lab\.jobs: must be a path/),
      ]),
    );
  });

  it('"local" is reserved, and select.ts spells it the same', () => {
    expect(SELECT_LOCAL).toBe(LOCAL_CONTEXT);
    const r = parseContexts('contexts:\n  local:\n    host: ssh://h\n');
    expect(r.ok).toBe(false);
  });
});

describe('where a command runs', () => {
  const where = (args: string[], env: Record<string, string> = {}, current?: string) =>
    chooseWhere(splitArgv(args), env, async () => current);

  it('--context > UGRO_HOST > UGRO_CONTEXT > the current context; "local" runs here', async () => {
    const env = { UGRO_HOST: 'ssh://ob@h', UGRO_CONTEXT: 'b' };
    expect(await where(['--context', 'a', 'get', 'jobs'], env, 'c')).toMatchObject({ kind: 'context', name: 'a' });
    expect(await where(['get', 'jobs'], env, 'c')).toMatchObject({ kind: 'host', url: 'ssh://ob@h' });
    expect(await where(['get', 'jobs'], { UGRO_CONTEXT: 'b' }, 'c')).toMatchObject({ kind: 'context', name: 'b' });
    expect(await where(['get', 'jobs'], {}, 'c')).toMatchObject({ kind: 'context', name: 'c' });
    expect(await where(['get', 'jobs'], {}, undefined)).toEqual({ kind: 'local' });
    expect(await where(['--context=local', 'get', 'jobs'], env, 'c')).toEqual({ kind: 'local' });
    expect(await where(['get', 'jobs'], { UGRO_CONTEXT: 'local' }, 'c')).toEqual({ kind: 'local' });
  });

  it('context, validate and help always run here; --cluster VALUE is not the command word', async () => {
    for (const verb of ['context', 'validate', 'help'])
      expect(await where(['--context', 'a', verb, 'x'], {}, undefined)).toEqual({ kind: 'local' });
    expect(splitArgv(['--cluster', 'get', 'apply', '-f', 'x']).verb).toBe(2);
    expect(splitArgv(['--cluster=c', 'get', 'jobs']).verb).toBe(1);
  });

  it('--context after the command word is refused (exit 2), not sent on', async () => {
    const r = await ugro(['get', 'jobs', '--context', 'lab']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: --context goes before the command: ugro --context NAME get …');
  });

  it('a context that does not exist: exit 2 naming the file and the way to add one', async () => {
    const r = await ugro(['--context', 'lab', 'get', 'jobs']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`no context named "lab" (from --context lab) in ${home}/.config/ugro/contexts.yaml`);
    expect(r.err).toContain('ugro context add NAME --host ssh://user@host');
  });

  it('UGRO_HOST without pinned keys: refused before ssh runs, with the commands that pin the key', async () => {
    const r = await ugro(['get', 'jobs'], { UGRO_HOST: 'ssh://ob@gpu-master:2200' });
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${home}/.ssh/known_hosts does not exist`);
    expect(r.err).toContain('ssh-keyscan -p 2200 -t ed25519 gpu-master');
  });
});

describe('the remote argv', () => {
  const plan = (args: string[], paths = {}) => planRemote(splitArgv(args), paths, true);

  it('context flags out, `--context local` and the context paths in; a --jobs given here comes later and wins', () => {
    const p = plan(['--context', 'lab', '--jobs', '/mine', 'get', 'jobs', '-w'], { cluster: '/c.yaml', jobs: '/j' });
    expect(p.args).toEqual([
      '--context',
      'local',
      '--exit-with-stdin',
      '--cluster',
      '/c.yaml',
      '--jobs',
      '/j',
      '--jobs',
      '/mine',
      'get',
      'jobs',
      '-w',
    ]);
    expect(p.sendFile).toBeUndefined();
  });

  it.each([
    [['apply', '-f', 'job.yaml']],
    [['apply', '--file', 'job.yaml', '--force']],
    [['apply', '--file=job.yaml']],
    [['apply', '-fjob.yaml']],
  ])('%j: the local file is sent on stdin to `apply -f -`, named as given', (args) => {
    const p = plan(args);
    expect(p.sendFile).toBe('job.yaml');
    expect(p.args).not.toContain('--exit-with-stdin'); // stdin carries the file
    const at = p.args.indexOf('-f');
    expect(p.args.slice(at, at + 4)).toEqual(['-f', '-', '--stdin-name', 'job.yaml']);
    expect(p.args).not.toContain('--file=job.yaml');
  });

  it('apply -f - passes this stdin through', () => {
    expect(plan(['apply', '-f', '-'])).toMatchObject({ passStdin: true });
  });

  it('export -o and results --plot would write on the controller host: refused with what to do instead', () => {
    expect(() => plan(['export', 'job', 'x', '--to', 'sbatch', '-o', 'x.sh'])).toThrow(/redirect stdout instead/);
    expect(() => plan(['results', 'x', '--plot', 'l.svg'])).toThrow(/would write FILE on the controller host/);
  });
});

describe('the ssh command', () => {
  const remote: Remote = {
    label: 'context lab',
    target: { user: 'ob', host: 'gpu-master', port: 2222 },
    knownHosts: '/k/known_hosts',
    identityFile: '/k/id',
    ugro: ['node', '/opt/my ugro/bin/ugro.mjs'],
    persistSeconds: 60,
  };

  it('no ssh config, pinned keys only, a shared connection, batch mode', () => {
    const a = sshArgv(remote, '/run/u/ugro-ssh/abc', ['get', 'jobs']);
    expect(a.slice(0, 2)).toEqual(['-F', '/dev/null']);
    for (const o of [
      'BatchMode=yes',
      'StrictHostKeyChecking=yes',
      'UserKnownHostsFile=/k/known_hosts',
      'GlobalKnownHostsFile=/dev/null',
      'UpdateHostKeys=no',
      'PermitLocalCommand=no',
      'ControlMaster=auto',
      'ControlPath=/run/u/ugro-ssh/abc',
      'ControlPersist=60',
      'IdentitiesOnly=yes',
    ])
      expect(a).toContain(o);
    expect(a.slice(-3, -1)).toEqual(['ob', 'gpu-master']);
    expect(a.at(-1)).toBe("exec node '/opt/my ugro/bin/ugro.mjs' get jobs");
    expect(sshArgv({ ...remote, persistSeconds: 0 }, undefined, ['x'])).toContain('ControlPath=none');
  });

  it('each hostile word arrives at the remote program as one argument (a real sh parses the string)', () => {
    const words = ["a'b", '$(touch /tmp/pwned)', '`id`', 'x; rm -rf /', '-n', '', 'two words', '\\', '*', '=x'];
    const line = remoteCommand(['printf', '%s\\0', ...words]);
    const r = spawnSync('sh', ['-c', line], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(words);
  });
});

describe('apply -f - (what a remote apply runs)', () => {
  const job = 'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: from-stdin}\nspec: {script: t.py}\n';

  it('places the job read from stdin, as with a file', async () => {
    const jobs = join(home, 'jobs');
    const r = await ugro(['--jobs', jobs, 'apply', '-f', '-'], {}, job);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe('trainingjob/from-stdin created');
    expect(readFileSync(join(jobs, 'from-stdin.yaml'), 'utf8')).toContain('name: from-stdin');
  });

  it('an invalid job names the file as the person named it (--stdin-name), with line and field', async () => {
    const r = await ugro(
      ['--jobs', join(home, 'jobs'), 'apply', '-f', '-', '--stdin-name', 'my/job.yaml'],
      {},
      job.replace('t.py', '[1]'),
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^my\/job\.yaml:4(:\d+)?: spec\.script: /m);
  });

  it('more than 1 MiB on stdin is refused, not cut', async () => {
    const r = await ugro(['--jobs', join(home, 'jobs'), 'apply', '-f', '-'], {}, `${job}#${'x'.repeat(1 << 20)}\n`);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: <stdin>: input is over \d+ bytes; the limit is 1 MiB$/);
  });
});

describe('contexts from the command line', () => {
  it('add, ls, use, show, rm: a 0600 file; a bad host or name is a usage error naming the flag', async () => {
    const env = { XDG_CONFIG_HOME: join(home, 'cfg') };
    const file = join(home, 'cfg/ugro/contexts.yaml');
    const add = await ugro(
      ['context', 'add', 'lab', '--host', 'ssh://ob@gpu-master', '--known-hosts', '/k', '--jobs', '/srv/jobs'],
      env,
    );
    expect(add.err).toBe('');
    expect(add.code).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'cfg/ugro')).mode & 0o777).toBe(0o700);
    expect(readFileSync(file, 'utf8')).toContain('jobs: /srv/jobs');
    expect((await ugro(['context', 'add', 'x', '--host', 'http://h'], env)).err).toMatch(/^error: --host: not an ssh/);
    expect((await ugro(['context', 'add', 'Bad', '--host', 'ssh://h'], env)).code).toBe(2);
    expect((await ugro(['context', 'add', 'lab', '--host', 'ssh://h'], env)).err).toContain('context lab exists');
    expect((await ugro(['context', 'use', 'lab'], env)).code).toBe(0);
    expect((await ugro(['context', 'ls'], env)).out).toMatch(/^lab \*\s+ssh:\/\/ob@gpu-master/m);
    expect((await ugro(['context', 'show'], env)).out).toMatch(/^lab \(from the current context/);
    expect((await ugro(['context', 'use', 'local'], env)).out).toBe('commands run here now');
    expect((await ugro(['context', 'rm', 'lab'], env)).code).toBe(0);
    expect((await ugro(['context', 'rm', 'lab'], env)).code).toBe(3);
  });

  it('a broken contexts file stops a command that would need it, naming file, line and field', async () => {
    const env = { XDG_CONFIG_HOME: join(home, 'cfg') };
    await ugro(['context', 'add', 'lab', '--host', 'ssh://ob@gpu-master'], env);
    writeFileSync(join(home, 'cfg/ugro/contexts.yaml'), 'current: lab\ncontexts:\n  lab:\n    host: gpu-master\n');
    const r = await ugro(['get', 'jobs'], env);
    expect(r.code).toBe(1);
    expect(r.err).toContain('contexts.yaml:4:11: contexts.lab.host: not an ssh:// URL');
  });
});

describe('who owns what (issue 17, item 5)', () => {
  const me = userInfo().username;
  const status = (owner?: string) =>
    `phase: Running\nobservedGeneration: 1\nattempt: 1\nnodes: []\ncreatedAt: 2025-01-01T00:00:00Z\nconditions: []\n` +
    (owner ? `owner: ${owner}\nownerBy: file owner\n` : '');
  const spec = (n: string) =>
    `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: ${n}}\nspec: {script: t.py}\n`;

  it('get jobs shows OWNER without -o wide; --mine: status.owner, else my spec file; never $USER', async () => {
    const jobs = join(home, 'jobs');
    mkdirSync(jobs);
    writeFileSync(join(jobs, 'mine.yaml'), spec('mine'));
    writeFileSync(join(jobs, 'mine.status.yaml'), status(me));
    writeFileSync(join(jobs, 'theirs.yaml'), spec('theirs'));
    writeFileSync(join(jobs, 'theirs.status.yaml'), status('someone-else'));
    writeFileSync(join(jobs, 'fresh.yaml'), spec('fresh')); // no status yet: my file, so mine
    const all = await ugro(['--jobs', jobs, 'get', 'jobs']);
    expect(all.out.split('\n')[0]).toMatch(/^NAME\s+PHASE\s+ATTEMPT\s+RESTARTS\s+NODES\s+PROGRESS\s+AGE\s+OWNER$/);
    expect(all.out).toMatch(/^theirs\s.*\ssomeone-else$/m);
    const mine = await ugro(['--jobs', jobs, 'get', 'jobs', '--mine'], { USER: 'someone-else' });
    expect(
      mine.out
        .split('\n')
        .slice(1)
        .map((l) => l.split(/\s+/)[0]),
    ).toEqual(['fresh', 'mine']);
    const json = await ugro(['--jobs', jobs, 'get', 'jobs', '--mine', '-o', 'json'], { USER: 'someone-else' });
    expect((JSON.parse(json.out) as { name: string }[]).map((j) => j.name)).toEqual(['fresh', 'mine']);
  });
});

describe('exit code 4', () => {
  it('regression: a ForbiddenError reaching main is exit 4 with its message (it was exit 1)', async () => {
    expect(EXIT.forbidden).toBe(4);
    const code = await main(
      ['node', 'ugro', '--jobs', home, 'events'],
      {
        out: () => {
          throw new ForbiddenError('ollie may not cancel job a (owner ob)');
        },
        err: () => undefined,
      },
      { HOME: home },
    );
    expect(code).toBe(4);
  });
});
