/** What the store read for one job's spec file: a valid TrainingJob, issues, or no file. */
import type { FieldIssue } from '../../config/errors.ts';
import type { TrainingJob } from './trainingjob.ts';

/**
 * `writer`: the account that wrote the file, as the OS reports it (the file's owner); absent where
 * the store was not told how to name accounts (then nothing is authorized by it).
 */
export type SpecState =
  | { kind: 'valid'; job: TrainingJob; hash: string; file: string; writer?: string }
  | { kind: 'invalid'; file: string; issues: FieldIssue[]; writer?: string }
  | { kind: 'deleted' };
