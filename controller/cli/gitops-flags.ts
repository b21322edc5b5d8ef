/**
 * `ugro controller`'s GitOps flags (registered at startup, so nothing is imported here but types).
 * The values (GitFlags) are typed and checked in controller/gitops/config.ts when the controller starts.
 */
import type { Command } from 'commander';

export function addGitFlags(cmd: Command): Command {
  return cmd
    .option('--git <url>', 'follow this git repository: its TrainingJob files are mirrored into the jobs dir (GitOps)')
    .option('--branch <name>', 'the branch to follow (default: main, or gitops.branch)')
    .option('--path <dir>', 'the jobs path in the repository (default: jobs)')
    .option('--interval <seconds>', 'fetch every this many seconds, 1..86400 (default: 30)')
    .option('--prune', 'stop jobs whose file was removed from git (default: keep them running, OutOfSync)')
    .option('--prune-all', 'also prune when one commit removes the whole path or more than half of the jobs')
    .option('--require-signed', 'apply only heads whose SSH signature verifies (needs --allowed-signers)')
    .option('--allowed-signers <file>', "git's allowed signers file (SSH signing format) for --require-signed")
    .option('--token-env <name>', 'https: the environment variable holding the token (default: UGRO_GIT_TOKEN)');
}
