/**
 * The Pulumi program (Pulumi.yaml `main` points at its compiled form, infra/dist/infra/index.js).
 * Importing this module does nothing; Pulumi calls the default export, whose result becomes the
 * stack outputs. This is the one place that turns UGRO's typed errors into a clean Pulumi error
 * (RunError: the message, without a stack trace).
 */
import { homedir } from 'node:os';
import * as pulumi from '@pulumi/pulumi';
import { loadCluster } from '../config/cluster.ts';
import { UgroError, ValidationError } from '../config/errors.ts';
import { CONFIG_NAMESPACE, clusterFileOf, parseStackConfig, resolveSettings } from './config.ts';
import { declareCluster } from './program.ts';

export default function main() {
  try {
    const parsed = parseStackConfig(pulumi.runtime.allConfig());
    if (!parsed.ok) throw new ValidationError(`Pulumi.${pulumi.getStack()}.yaml`, parsed.issues);
    const ctx = { cwd: process.cwd(), home: homedir() };
    const cluster = loadCluster(clusterFileOf(parsed.value, ctx));
    const settings = resolveSettings(parsed.value, cluster.environment, ctx);
    const config = new pulumi.Config(CONFIG_NAMESPACE);
    const passphrase = parsed.value.sshKeyPassphrase ? config.requireSecret('sshKeyPassphrase') : undefined;
    const declared = declareCluster(cluster, settings, { passphrase });
    return {
      cluster: cluster.name,
      clusterFile: settings.clusterFile,
      environmentManager: settings.manager,
      minDriverVersion: settings.minDriverVersion,
      cudaMajor: settings.requireCuda ? settings.cudaMajor : 'not required',
      hosts: declared.outputs,
    };
  } catch (e) {
    if (e instanceof UgroError) throw new pulumi.RunError(e.message);
    throw e;
  }
}
