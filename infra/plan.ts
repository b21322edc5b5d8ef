/**
 * Runs a declaration under Pulumi's mock runtime (pulumi.runtime.setMocks) and lists what the
 * engine would receive: every resource's type, name, URN, parent, dependencies and inputs.
 * The resource-graph tests assert on it; the lab test executes its commands over SSH in
 * dependency order, as the engine and the command provider would. No engine, no provider.
 */
import * as pulumi from '@pulumi/pulumi';
import { InternalError } from '../config/errors.ts';

export interface DeclaredAsset {
  kind: 'FileAsset' | 'FileArchive';
  path: string;
}

export interface DeclaredResource {
  type: string;
  name: string;
  urn: string;
  /** URN of the parent ("" for none). */
  parent: string;
  /** URNs this resource depends on (explicit dependsOn and inputs), as sent to the engine. */
  dependencies: string[];
  /** Inputs as the provider would get them: secrets unwrapped, assets as {kind, path}. */
  inputs: Record<string, unknown>;
  /** Top-level inputs that were secret (e.g. connection, which holds the private key). */
  secretInputs: string[];
  custom: boolean;
  /** The deleteBeforeReplace resource option. */
  deleteBeforeReplace: boolean;
}

/** Output values the mocks return, e.g. a Command's stdout; default: the inputs plus empty stdout. */
export type MockState = (r: { type: string; name: string; inputs: Record<string, unknown> }) => Record<string, unknown>;

const isSecretWrapper = (v: unknown): v is { value: unknown } =>
  !!v &&
  typeof v === 'object' &&
  (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig;

async function plain(v: unknown): Promise<unknown> {
  if (isSecretWrapper(v)) return plain(v.value);
  const o = v as object;
  if (o instanceof pulumi.asset.FileArchive) return { kind: 'FileArchive', path: await o.path };
  if (o instanceof pulumi.asset.FileAsset) return { kind: 'FileAsset', path: await o.path };
  if (Array.isArray(v)) return Promise.all(v.map(plain));
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = await plain(x);
    return o;
  }
  return v;
}

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getDependenciesList(): string[];
  getCustom(): boolean;
  getDeletebeforereplace(): boolean;
}

/**
 * Declare under mocks and wait until every resource has been registered. `declare` returns what
 * to wait for: resources (e.g. every GpuHost and its children) and/or outputs (stack outputs).
 */
export async function collectPlan(
  declare: () => (pulumi.Resource | pulumi.Output<unknown>)[],
  state: MockState = () => ({}),
): Promise<DeclaredResource[]> {
  const byName = new Map<string, DeclaredResource>();
  const pending: Promise<void>[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource: (a) => {
        const inputs = a.inputs as Record<string, unknown>;
        pending.push(
          (async () => {
            const rec = byName.get(`${a.type}::${a.name}`);
            if (!rec) return;
            rec.secretInputs = Object.keys(inputs).filter((k) => isSecretWrapper(inputs[k]));
            rec.inputs = (await plain(inputs)) as Record<string, unknown>;
          })(),
        );
        const extra = state({ type: a.type, name: a.name, inputs });
        return {
          id: a.custom ? `${a.name}-id` : undefined,
          state: {
            ...inputs,
            ...(a.type.startsWith('command:remote:Command') ? { stdout: '', stderr: '' } : {}),
            ...extra,
          },
        };
      },
      call: (a) => a.inputs as Record<string, unknown>,
    },
    'ugro',
    'plan',
    false,
  );
  // The mock monitor's requests carry what newResource does not see: parent and dependencies.
  const monitor = pulumi.runtime.getMonitor() as unknown as {
    registerResource(req: RegisterRequest, cb: unknown): unknown;
  };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    const parentUrn = req.getParent();
    const urn = parentUrn
      ? `urn:pulumi:plan::ugro::${parentUrn.split('::')[2]}$${req.getType()}::${req.getName()}`
      : `urn:pulumi:plan::ugro::${req.getType()}::${req.getName()}`;
    byName.set(`${req.getType()}::${req.getName()}`, {
      type: req.getType(),
      name: req.getName(),
      urn,
      parent: parentUrn,
      dependencies: [...req.getDependenciesList()],
      inputs: {},
      secretInputs: [],
      custom: req.getCustom(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
    });
    return register(req, cb);
  };
  const roots = declare();
  const waits = roots.map((r) => (pulumi.Resource.isInstance(r) ? r.urn : r));
  await new Promise<void>((resolve) => pulumi.all(waits).apply(() => resolve()));
  // What the runtime does when a program returns: wait until every registration RPC is done.
  await pulumi.runtime.disconnect();
  await Promise.all(pending);
  return [...byName.values()];
}

/**
 * Dependency order (as the engine creates resources): a resource after everything it depends
 * on, ties in declaration order. Throws on a cycle.
 */
export function orderPlan(rs: DeclaredResource[]): DeclaredResource[] {
  const byUrn = new Map(rs.map((r) => [r.urn, r]));
  const done = new Set<string>();
  const out: DeclaredResource[] = [];
  const visit = (r: DeclaredResource, path: string[]) => {
    if (done.has(r.urn)) return;
    if (path.includes(r.urn)) throw new InternalError(`dependency cycle: ${[...path, r.urn].join(' -> ')}`);
    for (const d of r.dependencies) {
      const dep = byUrn.get(d);
      if (dep) visit(dep, [...path, r.urn]);
    }
    done.add(r.urn);
    out.push(r);
  };
  for (const r of rs) visit(r, []);
  return out;
}

/** Every URN `r` depends on, directly or not. */
export function transitiveDependencies(rs: DeclaredResource[], r: DeclaredResource): Set<string> {
  const byUrn = new Map(rs.map((x) => [x.urn, x]));
  const seen = new Set<string>();
  const stack = [...r.dependencies];
  while (stack.length) {
    const u = stack.pop()!;
    if (seen.has(u)) continue;
    seen.add(u);
    stack.push(...(byUrn.get(u)?.dependencies ?? []));
  }
  return seen;
}
