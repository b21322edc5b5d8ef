// The `slurm:` section of the lab's cluster file, for tests/lab/slurm.sh: `add` writes it (the
// lab's Slurm cluster: gpu-master is its login host), `remove` takes it out again. The rest of the
// file is kept as it is, comments included; the file is replaced whole (written aside, renamed).
// Usage: node tests/lab/slurm-cluster-file.mjs add FILE LOGIN_HOST LOGIN_IP LOGIN_USER PARTITION PYTHON
//        node tests/lab/slurm-cluster-file.mjs remove FILE
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { isMap, parseDocument } from 'yaml';

const NOTE = ' Written by `npm run lab -- slurm up`, removed by `slurm down`: the lab Slurm cluster.';

function fail(message) {
  process.stderr.write(`[lab slurm] error: ${message}\n`);
  process.exit(1);
}

const [verb, file, ...rest] = process.argv.slice(2);
if (!file || !['add', 'remove'].includes(verb) || rest.length !== (verb === 'add' ? 5 : 0))
  fail('usage: slurm-cluster-file.mjs add FILE LOGIN_HOST LOGIN_IP LOGIN_USER PARTITION PYTHON | remove FILE');
let text;
try {
  text = readFileSync(file, 'utf8');
} catch (e) {
  fail(`cannot read ${file} (${e.code ?? e.message}): run \`npm run lab -- up\` first`);
}
const doc = parseDocument(text);
if (doc.errors.length || !isMap(doc.contents)) fail(`${file} is not a YAML mapping: ${doc.errors[0]?.message ?? ''}`);
doc.delete('slurm');
if (verb === 'add') {
  const [hostname, ip, user, partition, python] = rest;
  // poll_seconds 1: a lab job's states show quickly (the default, 2 s, is for a real cluster)
  const pair = doc.createPair('slurm', {
    name: 'slurm',
    login: { hostname, ip, user },
    partition,
    python,
    poll_seconds: 1,
  });
  pair.key.commentBefore = NOTE;
  pair.value.get('login', true).flow = true;
  doc.contents.items.push(pair);
}
const tmp = `${file}.tmp.${process.pid}`;
writeFileSync(tmp, doc.toString({ lineWidth: 0 }), { mode: statSync(file).mode & 0o777 });
renameSync(tmp, file);
