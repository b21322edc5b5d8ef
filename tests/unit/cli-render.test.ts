/** The CLI's pure renderers (controller/cli/render/*): fixed inputs, exact output. */
import { describe, expect, it } from 'vitest';
import type { SpecState } from '../../controller/api/job-state.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import type { TrainingJob } from '../../controller/api/trainingjob.ts';
import type { NodeHealth } from '../../controller/backends/health.ts';
import { clean, table } from '../../controller/cli/output.ts';
import { describeJob } from '../../controller/cli/render/describe.ts';
import { eventsTable } from '../../controller/cli/render/events.ts';
import { jobsTable, projectSpec, projectStatus } from '../../controller/cli/render/jobs.ts';
import { hostKeysTable, inventoryTable, nodesTable } from '../../controller/cli/render/nodes.ts';
import { resultsText } from '../../controller/cli/render/results.ts';
import type { JobEvent } from '../../controller/store/store.ts';

const NOW = new Date('2025-03-01T12:00:00Z');

const running: JobStatus = {
  phase: 'Running',
  observedGeneration: 1,
  specHash: 'abcd1234',
  attempt: 2,
  runId: 'llama.abcd1234.2',
  rdzvEndpoint: '10.0.0.10:29500',
  nodes: [
    { host: 'gpu-master', nodeRank: 0, globalRanks: [0, 1], pid: 4242, state: 'Running' },
    { host: 'gpu1', nodeRank: 1, globalRanks: [2, 3], state: 'Pending' },
  ],
  createdAt: '2025-03-01T11:56:48Z',
  startTime: '2025-03-01T11:57:00Z',
  progress: { epoch: 3, loss: 0.25 },
  message: 'training\nsecond line',
  conditions: [
    {
      type: 'Scheduled',
      status: 'True',
      reason: 'Placed',
      message: 'on gpu-master, gpu1',
      lastTransitionTime: '2025-03-01T11:57:00Z',
    },
  ],
};

const failed: JobStatus = {
  phase: 'Failed',
  reason: 'RankFailed',
  message: 'rank 1 exited with 3',
  observedGeneration: 1,
  specHash: 'abcd1234',
  attempt: 1,
  runId: 'bad.abcd1234.1',
  nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0], pid: 7, state: 'Failed', exitCode: 3 }],
  createdAt: '2025-03-01T10:00:00Z',
  startTime: '2025-03-01T10:00:00Z',
  completionTime: '2025-03-01T10:01:30.5Z',
  exitCode: 3,
  failedRank: 0,
  failedHost: 'gpu1',
  logTail: ['step 9', 'boom \u001b[31mred'],
  restarts: { infra: 1, training: 0 },
  failures: [
    {
      attempt: 1,
      class: 'training',
      reason: 'RankFailed',
      message: 'exit 3\nmore',
      host: 'gpu1',
      rank: 0,
      exitCode: 3,
      time: '2025-03-01T10:01:30Z',
    },
  ],
  nextRetryAt: '2025-03-01T10:02:00Z',
  conditions: [],
};

describe('output helpers', () => {
  it('table: columns padded to the widest cell, two spaces apart, last column not padded', () => {
    expect(
      table(
        ['A', 'BB', 'C'],
        [
          ['xxx', 'y', 'z'],
          ['1', '22222', ''],
        ],
      ),
    ).toBe('A    BB     C\nxxx  y      z\n1    22222');
  });

  it('clean: terminal control characters become "?"', () => {
    expect(clean('ok\u001b]0;pwned\u0007 \u009b2J\ttab')).toBe('ok?]0;pwned? ?2J?tab');
  });
});

describe('render/jobs: get jobs', () => {
  const rows = [
    { name: 'llama', status: running },
    { name: 'fresh', spec: { spec: { nodes: { min: 2, max: 3 } } } },
    { name: 'bad', status: failed },
    // A status of the wrong shape shows as no status; a spec of the wrong shape as nodes '-'.
    { name: 'odd', status: { phase: 7 }, spec: 'not a spec' },
  ];

  it('table', () => {
    expect(jobsTable(rows, false, NOW)).toBe(
      [
        'NAME   PHASE    ATTEMPT  RESTARTS     NODES  PROGRESS           AGE',
        'llama  Running  2        0            1/2    epoch 3 loss 0.25  3m12s',
        'fresh  Pending  0        0            2-3    -                  -',
        'bad    Failed   1        1 (1 infra)  0/1    -                  2h0m',
        'odd    Pending  0        0            -      -                  -',
      ].join('\n'),
    );
  });

  it('wide: hosts, run and the first line of the message', () => {
    expect(jobsTable(rows.slice(0, 2), true, NOW)).toBe(
      [
        'NAME   PHASE    ATTEMPT  RESTARTS  NODES  PROGRESS           AGE    HOSTS            RUN               ' +
          'MESSAGE',
        'llama  Running  2        0         1/2    epoch 3 loss 0.25  3m12s  gpu-master,gpu1  llama.abcd1234.2  ' +
          'training',
        'fresh  Pending  0        0         2-3    -                  -      -                -                 -',
      ].join('\n'),
    );
  });

  it('what the cache keeps of a status or spec renders the same as the whole file', () => {
    for (const r of rows) {
      const projected = { name: r.name, status: projectStatus(r.status), spec: projectSpec(r.spec) };
      expect(jobsTable([projected], true, NOW)).toBe(jobsTable([r], true, NOW));
    }
  });

  it('fields of the wrong type never reach the terminal raw', () => {
    const hostile = {
      phase: 'Running\u001b[2J',
      attempt: '9',
      nodes: [{ state: 'Running', host: ['x'] }],
      progress: 5,
    };
    expect(jobsTable([{ name: 'h', status: hostile }], true, NOW).split('\n')[1]).toBe(
      'h     Running?[2J  0        0         1/1    -         -    ?      -    -',
    );
  });
});

describe('render/describe: describe job', () => {
  // A hand-made spec (not parsed): the renderer shows what it is given, defaults or not.
  const job = {
    apiVersion: 'ugro.dev/v1alpha1',
    kind: 'TrainingJob',
    metadata: { name: 'llama' },
    spec: { script: 'train.py', args: ['--epochs', '3'], nodes: 2 },
  } as unknown as TrainingJob;
  const spec: SpecState = { kind: 'valid', job, hash: 'abcd1234', file: '/jobs/llama.yaml' };
  const events: JobEvent[] = [
    { time: '2025-03-01T11:57:00Z', job: 'llama', type: 'Normal', reason: 'Launched', message: 'attempt 2\nx' },
  ];

  it('a running job: status, nodes, conditions, spec, events', () => {
    const text = describeJob({ name: 'llama', spec, status: running, events });
    expect(text).toBe(
      [
        'Name:         llama',
        'File:         /jobs/llama.yaml',
        'Phase:        Running',
        'Message:      training',
        'Attempt:      2',
        'Run:          llama.abcd1234.2',
        'Rendezvous:   10.0.0.10:29500',
        'Started:      2025-03-01T11:57:00Z',
        'Completed:    -',
        'Progress:     {"epoch":3,"loss":0.25}',
        'Nodes:',
        '  HOST        NODE RANK  GLOBAL RANKS  PID   STATE    EXIT',
        '  gpu-master  0          0,1           4242  Running  -',
        '  gpu1        1          2,3           -     Pending  -',
        'Conditions:',
        '  TYPE       STATUS  REASON  SINCE                 MESSAGE',
        '  Scheduled  True    Placed  2025-03-01T11:57:00Z  on gpu-master, gpu1',
        'Spec:',
        '  script: train.py',
        '  args:',
        '    - --epochs',
        '    - "3"',
        '  nodes: 2',
        'Events:',
        '  TIME                  TYPE    REASON    MESSAGE',
        '  2025-03-01T11:57:00Z  Normal  Launched  attempt 2',
      ].join('\n'),
    );
  });

  it('GPUs per node, the owner and a planned scale-up are shown when the status has them', () => {
    const st: JobStatus = {
      ...running,
      owner: 'alice',
      scaleUp: { nodes: 3, since: '2025-03-01T11:58:00.000Z', after: 'step-40' },
      nodes: [
        { ...running.nodes[0], gpus: [{ index: 1, name: 'NVIDIA GeForce RTX 4070', memoryMiB: 8188 }] },
        { ...running.nodes[1], gpus: [] },
      ],
    };
    const text = describeJob({ name: 'llama', spec, status: st, events: [] });
    expect(text).toContain('Owner:        alice');
    expect(text).toContain(
      'Scale up:     to 3 nodes (GPUs free since 2025-03-01T11:58:00.000Z), at the first checkpoint after step-40',
    );
    expect(text).toContain('EXIT  GPUS');
    expect(text).toMatch(/gpu-master .* 1 RTX 4070 8G\n/);
  });

  it('a failed job: exit code, restarts, next retry, failures, the log tail cleaned; no events', () => {
    const text = describeJob({ name: 'bad', spec: { kind: 'deleted' }, status: failed, events: [] });
    expect(text).toBe(
      [
        'Name:         bad',
        'File:         (deleted)',
        'Phase:        Failed (RankFailed)',
        'Message:      rank 1 exited with 3',
        'Attempt:      1',
        'Run:          bad.abcd1234.1',
        'Rendezvous:   -',
        'Started:      2025-03-01T10:00:00Z',
        'Completed:    2025-03-01T10:01:30.5Z',
        'Restarts:     infra 1, training 0',
        'Next retry:   2025-03-01T10:02:00Z',
        'Exit code:    3 (rank 0 on gpu1)',
        'Nodes:',
        '  HOST  NODE RANK  GLOBAL RANKS  PID  STATE   EXIT',
        '  gpu1  0          0             7    Failed  3',
        'Conditions:',
        '  <none>',
        'Failures:',
        '  TIME                  ATTEMPT  CLASS     REASON      WHERE               MESSAGE',
        '  2025-03-01T10:01:30Z  1        training  RankFailed  gpu1 rank 0 exit 3  exit 3',
        'Last log lines of the failing rank:',
        '  step 9',
        '  boom ?[31mred',
        'Events:',
        '  <none>',
      ].join('\n'),
    );
  });

  it('an invalid spec and no status yet', () => {
    const invalid: SpecState = {
      kind: 'invalid',
      file: '/jobs/x.yaml',
      issues: [{ path: 'spec.nodes', message: 'must be >= 1', line: 5, column: 10 }],
    };
    expect(describeJob({ name: 'x', spec: invalid, events: [] })).toBe(
      [
        'Name:         x',
        'File:         /jobs/x.yaml',
        'Phase:        Pending (no status yet: is `ugro controller` running?)',
        'Spec: INVALID',
        '  /jobs/x.yaml:5:10: spec.nodes: must be >= 1',
        'Events:',
        '  <none>',
      ].join('\n'),
    );
  });
});

describe('render/results: results', () => {
  it('phase, attempts, duration, metrics, where checkpoints and logs are', () => {
    expect(resultsText({ name: 'bad', status: failed, checkpoints: { host: 'gpu1', dir: '/ckpt/bad' } })).toBe(
      [
        'Job:           bad',
        'Phase:         Failed (rank 1 exited with 3)',
        'Attempts:      1',
        'Duration:      90.5 s',
        'Final metrics: (none reported)',
        'Checkpoints:   gpu1:/ckpt/bad',
        'Logs:          ugro logs bad --rank N',
      ].join('\n'),
    );
  });

  it('still running: no duration; the metrics so far', () => {
    const text = resultsText({ name: 'llama', status: running, checkpoints: { host: '?', dir: '-' } });
    expect(text.split('\n').slice(3, 6)).toEqual([
      'Duration:      -',
      'Final metrics: {"epoch":3,"loss":0.25}',
      'Checkpoints:   ?:-',
    ]);
  });
});

describe('render/events: events', () => {
  const evs: JobEvent[] = [
    { time: '2025-03-01T11:57:00Z', job: 'a', type: 'Normal', reason: 'Launched', message: 'attempt 1' },
    { time: '2025-03-01T11:58:00Z', job: 'bb', type: 'Warning', reason: 'RankFailed', message: 'rank 0\ntrace' },
  ];
  it('all jobs: a JOB column, first line of each message', () => {
    expect(eventsTable(evs, { job: true })).toBe(
      [
        'TIME                  JOB  TYPE     REASON      MESSAGE',
        '2025-03-01T11:57:00Z  a    Normal   Launched    attempt 1',
        '2025-03-01T11:58:00Z  bb   Warning  RankFailed  rank 0',
      ].join('\n'),
    );
  });
  it('none', () => {
    expect(eventsTable([], { job: true })).toBe('No events.');
  });
});

describe('render/nodes: health, config show -o table, hosts list', () => {
  const ready: NodeHealth = {
    name: 'gpu1',
    address: '10.0.0.11:22',
    user: 'ob',
    role: 'worker',
    status: 'Ready',
    reasons: [],
    warnings: ['clock offset 40 ms'],
    rttMs: 1.6,
    clockOffsetMs: -3.2,
    python: '3.11.2',
    torch: { version: '2.3.1', cuda: '12.1' },
    gpus: [
      {
        index: 0,
        name: 'NVIDIA GeForce RTX 3090',
        memoryTotalMiB: 24576,
        memoryUsedMiB: 0,
        utilizationPct: 7,
        driver: '550.54',
      },
    ],
    disk: { path: '/home/ob', freeGiB: 120.4, totalGiB: 500 },
    checkedAt: '2025-03-01T12:00:00Z',
  };
  const down: NodeHealth = {
    name: 'gpu2',
    address: '10.0.0.12:22',
    user: 'ollie',
    role: 'worker',
    status: 'NotReady',
    reasons: ['unreachable: connect ETIMEDOUT'],
    warnings: [],
    torch: null,
    gpus: [],
    checkedAt: '2025-03-01T12:00:00Z',
  };

  it('nodes table', () => {
    expect(nodesTable([ready, down])).toBe(
      [
        'NODE  STATUS    ADDRESS             GPU                DRIVER  TORCH              PYTHON  DISK FREE  CLOCK  ' +
          'LATENCY  REASON',
        'gpu1  Ready     ob@10.0.0.11:22     RTX 3090 24GiB 7%  550.54  2.3.1 (cuda 12.1)  3.11.2  120GiB     -3ms   ' +
          '2ms      warning: clock offset 40 ms',
        'gpu2  NotReady  ollie@10.0.0.12:22  -                  -       no torch           -       -          -      ' +
          '-        unreachable: connect ETIMEDOUT',
      ].join('\n'),
    );
  });

  it('hosts list: pinned keys, or how to pin them', () => {
    expect(
      hostKeysTable([
        {
          name: 'gpu-master',
          role: 'master',
          rank: 0,
          address: '10.0.0.10',
          port: 22,
          user: 'master',
          pinned: ['ssh-ed25519 SHA256:abc'],
        },
        { name: 'gpu1', role: 'worker', rank: 1, address: '10.0.0.11', port: 2222, user: 'ob', pinned: [] },
      ]),
    ).toBe(
      [
        'HOST        ROLE    RANK  ADDRESS         USER    PINNED KEY',
        'gpu-master  master  0     10.0.0.10:22    master  ssh-ed25519 SHA256:abc',
        'gpu1        worker  1     10.0.0.11:2222  ob      NONE (run `ugro hosts trust gpu1`)',
      ].join('\n'),
    );
  });

  it('inventory table', () => {
    const host = {
      name: 'gpu1',
      role: 'worker',
      rank: 1,
      address: '10.0.0.11',
      port: 22,
      user: 'ob',
      gpus: [{ model: 'RTX 3090', vramGb: 24 }],
      paths: { project: '/home/ob/ugro' },
      python: 'python3',
    };
    expect(inventoryTable({ hosts: [host] as never })).toBe(
      [
        'HOST  ROLE    RANK  ADDRESS       USER  GPU            PROJECT        PYTHON',
        'gpu1  worker  1     10.0.0.11:22  ob    RTX 3090 24GB  /home/ob/ugro  python3',
      ].join('\n'),
    );
  });
});
