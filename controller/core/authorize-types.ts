/** What the loop passes the pure reconcile for authorization (core/authorize.ts). */
import type { SpecState } from '../api/job-state.ts';
import type { Access } from './permissions.ts';

export type ValidSpec = Extract<SpecState, { kind: 'valid' }>;

/** What the loop passes in for authorization. */
export interface AuthContext {
  access: Access;
  /** Who owns the jobs of an unsigned GitOps commit (config/users.ts unsignedOwnerOf). */
  unsignedOwner: string;
  /** The spec this job was last accepted with (jobs/.ugro/accepted/), when the loop has it. */
  accepted?: ValidSpec;
}
