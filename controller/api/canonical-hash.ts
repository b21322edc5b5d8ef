/**
 * A stable short hash of a JSON-like value: object keys sorted at every level, so two specs that
 * differ only in key order hash the same. 8 hex chars of SHA-256 (spec and sweep hashes).
 */
import { createHash } from 'node:crypto';

function canon(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
    );
  return v;
}

export function canonicalHash(value: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(canon(value)))
    .digest('hex')
    .slice(0, 8);
}
