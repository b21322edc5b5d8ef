/**
 * Device check, step 3 (here): read device-results.txt and put the real outputs through UGRO's
 * own parsers: nvidia-smi CSV, the health probe and its Ready/NotReady judgement, the observed run.
 * Usage: npx tsx tests/device/report.ts RESULTS [PREP_DIR=.device]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCluster } from '../../config/cluster.ts';
import { judge, parseNvidiaSmiCsv, parseProbe } from '../../controller/backends/health.ts';
import { launchAnswerOf, observeResultOf, waitAnswerOf } from '../../controller/backends/records.ts';

export function sectionsOf(text: string): Map<string, { rc: string; body: string }> {
  const m = new Map<string, { rc: string; body: string }>();
  const re = /^@@@ (\S+)\n([\s\S]*?)^@@@ \1 rc=(\d+)$/gm;
  for (const x of text.matchAll(re)) m.set(x[1], { rc: x[3], body: x[2] });
  return m;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2];
  const prep = process.argv[3] ?? '.device';
  const s = sectionsOf(readFileSync(file, 'utf8'));
  const cl = parseCluster(readFileSync(join(prep, 'cluster.yaml'), 'utf8'), 'device', {
    env: {},
    home: '/root',
    user: 'root',
  });
  if (!cl.ok) throw new Error('cluster');
  const show = (k: string) => console.log(`--- ${k} (rc ${s.get(k)?.rc}):\n${s.get(k)?.body.trimEnd()}`);
  show('which');
  try {
    console.log('parseNvidiaSmiCsv:', JSON.stringify(parseNvidiaSmiCsv(s.get('nvidia-smi-query')?.body ?? '')));
  } catch (e) {
    console.log('parseNvidiaSmiCsv: error:', (e as Error).message);
  }
  const facts = parseProbe(s.get('probe')?.body ?? '');
  console.log(
    'parseProbe:',
    JSON.stringify(facts, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
  );
  const h = judge(cl.value.master, cl.value, facts, {}, new Date().toISOString());
  console.log(`judge: ${h.status} ${h.reasons.join('; ')} warnings: ${h.warnings.join('; ')}`);
  for (const k of ['driver', 'driver-too-old', 'torch', 'torch-wrong-cuda', 'launch', 'wait']) show(k);
  console.log(s.get('elapsed-ms') ?? readFileSync(file, 'utf8').match(/^@@@ elapsed-ms .*$/m)?.[0]);
  console.log('launchAnswerOf:', JSON.stringify(launchAnswerOf(s.get('launch')?.body ?? '')));
  console.log('waitAnswerOf:', JSON.stringify(waitAnswerOf(s.get('wait')?.body ?? '')));
  try {
    const { parts, rejected } = observeResultOf('gpu-device', s.get('observe')?.body ?? '');
    console.log(
      'observeResultOf:',
      JSON.stringify({
        parts: parts.map((p) => ({ dir: p.dir, alive: p.alive, exitCode: p.exitCode, ranks: p.ranks })),
        rejected,
      }),
    );
  } catch (e) {
    console.log('observeResultOf: error:', (e as Error).message);
  }
  for (const k of ['rank-0.log', 'torchrun.log', 'metrics', 'checkpoints']) show(k);
}
