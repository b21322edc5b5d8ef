/** What the store read for one job's spec file: a valid TrainingJob, issues, or no file. */
import type { FieldIssue } from '../../config/errors.ts';
import type { TrainingJob } from './trainingjob.ts';

export type SpecState =
  | { kind: 'valid'; job: TrainingJob; hash: string; file: string }
  | { kind: 'invalid'; file: string; issues: FieldIssue[] }
  | { kind: 'deleted' };
