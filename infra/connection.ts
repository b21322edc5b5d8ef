/**
 * The SSH connection every remote.Command / remote.CopyToRemote of a host carries. The host key
 * is always pinned from known_hosts: a host without a pinned key stops the program before any
 * resource is declared (the provider would otherwise accept any key).
 */
import { readFileSync } from 'node:fs';
import type { types } from '@pulumi/command';
import * as pulumi from '@pulumi/pulumi';
import type { Host } from '../config/cluster.ts';
import { UgroError } from '../config/errors.ts';
import { hostNames, type KnownHostEntry, pinnedHostKey as pinnedKeyOf, readKnownHosts } from '../config/known-hosts.ts';

export type ConnectionArgs = types.input.remote.ConnectionArgs;

/** Builds the connection of a host; tests may pass their own. */
export type ConnectionFactory = (host: Host) => ConnectionArgs;

export interface ConnectionOptions {
  /** Overrides the host's identity file. */
  keyPath?: string;
  /** Overrides the host's known_hosts. */
  knownHostsPath?: string;
  /** Key passphrase (a Pulumi secret from the stack config). */
  passphrase?: pulumi.Input<string>;
  /** Seconds the provider keeps dialing a host that does not answer yet. */
  reachabilityTimeoutSeconds: number;
  env?: Record<string, string | undefined>;
  readFile?: (path: string) => string;
  readKnownHosts?: (path: string) => KnownHostEntry[];
}

/** "type base64" of the host's pinned key (config/known-hosts.ts decides which), or undefined. */
export function pinnedHostKey(
  entries: KnownHostEntry[],
  h: Pick<Host, 'address' | 'hostname' | 'name' | 'port'>,
): string | undefined {
  return pinnedKeyOf(entries, hostNames(h), h.port);
}

/** The provider's dial loop is the reachability poll: about one dial every 5 s until the timeout. */
export function dialPolicy(timeoutSeconds: number): { perDialTimeout: number; dialErrorLimit: number } {
  // Each dial is bounded to 5 s, so dialErrorLimit dials of a host that drops packets also fit the
  // timeout (15 s dials would have made 300 s into 15 minutes). A LAN handshake takes well under 5 s.
  const perDialTimeout = Math.min(5, Math.max(1, timeoutSeconds));
  return { perDialTimeout, dialErrorLimit: Math.max(1, Math.ceil(timeoutSeconds / perDialTimeout)) };
}

export function makeConnection(host: Host, o: ConnectionOptions): ConnectionArgs {
  const env = o.env ?? process.env;
  const readFile = o.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const knownHosts = o.knownHostsPath ?? host.ssh.knownHosts;
  const hostKey = pinnedHostKey((o.readKnownHosts ?? readKnownHosts)(knownHosts), host);
  if (!hostKey) {
    throw new UgroError(
      `${host.name}: no host key for ${host.address}:${host.port} is pinned in ${knownHosts}: ` +
        `run \`ugro hosts trust ${host.name}\` (check the fingerprint it shows), then pulumi up again`,
    );
  }
  const keyPath = o.keyPath ?? host.ssh.identityFile;
  let privateKey: pulumi.Output<string> | undefined;
  if (keyPath) {
    try {
      privateKey = pulumi.secret(readFile(keyPath));
    } catch (e) {
      if (!(host.ssh.useAgent && env.SSH_AUTH_SOCK)) {
        throw new UgroError(
          `${host.name}: cannot read the SSH key ${keyPath}: ${(e as Error).message}: ` +
            'set ugro:sshKeyPath (or ssh.identity_file in the cluster file), or run ssh-agent',
        );
      }
    }
  }
  if (!privateKey && !(host.ssh.useAgent && env.SSH_AUTH_SOCK)) {
    throw new UgroError(
      `${host.name}: no SSH key to log in with: ` +
        'set ugro:sshKeyPath (or ssh.identity_file in the cluster file), or run ssh-agent with ssh.use_agent: true',
    );
  }
  const fromEnv = host.ssh.passphraseEnv ? env[host.ssh.passphraseEnv] : undefined;
  const passphrase = o.passphrase ?? (fromEnv ? pulumi.secret(fromEnv) : undefined);
  return {
    host: host.address,
    port: host.port,
    user: host.user,
    hostKey,
    ...(privateKey ? { privateKey } : {}),
    ...(privateKey && passphrase ? { privateKeyPassword: passphrase } : {}),
    // Without a key the provider uses the agent at its own SSH_AUTH_SOCK. Not written into the
    // connection: that path changes with every login, and a changed connection replaces every step.
    ...dialPolicy(o.reachabilityTimeoutSeconds),
  };
}
