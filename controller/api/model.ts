/**
 * A model version in the registry (`ugro promote`): a checkpoint of a job, with its lineage and
 * where its copies are. Stored one file per version (store/models.ts); read back through this
 * schema as hostile input (the registry dir lies in jobs/, which people write to).
 */
import { z } from 'zod';
import { DNS1123_LABEL, dnsLabel } from '../../config/names.ts';

const metricsValue = z.union([z.number(), z.string().max(1000), z.boolean()]);

export const modelVersionSchema = z.strictObject({
  model: dnsLabel,
  version: z.number().int().min(1).max(1_000_000),
  createdAt: z.iso.datetime(),
  /** The account that promoted it. */
  by: z.string().max(256),
  job: dnsLabel,
  /** The checkpoint's name (file `<checkpoint>.pt`), e.g. step-400. */
  checkpoint: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, 'must be a checkpoint name like "step-400"'),
  step: z.number().int().min(0).optional(),
  /** The attempt that wrote it, its spec hash and run dir. */
  attempt: z.number().int().min(1).max(1_000_000).optional(),
  specHash: z
    .string()
    .regex(/^[0-9a-f]{8}$/)
    .optional(),
  runDir: z.string().max(200).optional(),
  /** GitOps: the commit the spec was applied from. */
  revision: z.string().max(64).optional(),
  metrics: z.record(z.string().max(100), metricsValue).optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 hex digits'),
  sizeBytes: z.number().int().min(0),
  /** Every host holding a verified copy, and the file's path there. */
  copies: z
    .array(z.strictObject({ host: dnsLabel, path: z.string().startsWith('/').max(4096) }))
    .min(1)
    .max(64),
});
export type ModelVersion = z.output<typeof modelVersionSchema>;

/** A model name: a DNS-1123 label, like a job's. */
export function isModelName(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/** `NAME:vN` */
export const modelRef = (v: Pick<ModelVersion, 'model' | 'version'>) => `${v.model}:v${v.version}`;
