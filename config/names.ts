/**
 * Names UGRO gives things (jobs, hosts, runs): one rule, a DNS-1123 label. zod only, so the API types
 * (controller/api/) and the job files' store can check a name without loading the inventory schema.
 */
import { z } from 'zod';

/** DNS-1123 label: what Kubernetes accepts as a name; safe in file names and shell words. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const dnsLabel = z
  .string()
  .max(63, 'must be at most 63 characters')
  .regex(
    DNS1123_LABEL,
    'must be a DNS-1123 label: lowercase letters, digits and "-", ' +
      'starting and ending with a letter or digit (e.g. "gpu1")',
  );
