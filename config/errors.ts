/**
 * Typed errors shared by config/, infra/ and controller/. The CLI entry is the one place that
 * turns them into a message and an exit code (docs/conventions.md, "Errors").
 */
export class UgroError extends Error {
  /**
   * Process exit code the CLI uses for this error: 1 (the operation failed). Subclasses set their
   * own: UsageError 2, NotFoundError 3, ForbiddenError 4 (the contract is in controller/cli/main.ts).
   */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A broken invariant: a bug in UGRO, never a fact about the machine or the input (those are UgroErrors).
 * Deliberately not a UgroError: the CLI prints its stack and says it is a bug (docs/conventions.md, "Errors").
 */
export class InternalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InternalError';
  }
}

/** Throws an InternalError unless `cond` holds: for what the code above already made true (a schema, a constant). */
export function assert(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new InternalError(typeof message === 'string' ? message : message());
}

/** The command line is wrong: an unknown value, a flag out of range, a name that is not a name. Exit 2. */
export class UsageError extends UgroError {
  override readonly exitCode: number = 2;
}

/** A named thing (a job, a rank, a host) does not exist. Exit 3. */
export class NotFoundError extends UgroError {
  override readonly exitCode: number = 3;
}

/**
 * Who asked may not do this to this job (issue 17: only its owner or an admin may change, stop or
 * delete a job). Exit 4. The message names who tried what and who may (core/permissions.ts).
 */
export class ForbiddenError extends UgroError {
  override readonly exitCode: number = 4;
}

/** One problem found in an input file, located by field path and (for YAML) line. */
export interface FieldIssue {
  /** Dotted field path, e.g. `workers[1].ssh_port`. Empty for the document itself. */
  path: string;
  message: string;
  /** 1-based line in the source file, when known. */
  line?: number;
  column?: number;
}

/** A file that failed validation: carries every issue, each with its path and line. */
export class ValidationError extends UgroError {
  constructor(
    readonly file: string,
    readonly issues: FieldIssue[],
  ) {
    super(formatIssues(file, issues));
  }
}

export function formatIssue(file: string, i: FieldIssue): string {
  const where = i.line ? `${file}:${i.line}${i.column ? `:${i.column}` : ''}` : file;
  return `${where}: ${i.path ? `${i.path}: ` : ''}${i.message}`;
}

function formatIssues(file: string, issues: FieldIssue[]): string {
  const head = `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}`;
  return [head, ...issues.map((i) => `  ${formatIssue(file, i)}`)].join('\n');
}

/**
 * An error from the operating system (EACCES, ENOSPC, ENOENT… with the syscall that failed): about
 * the machine, not a bug in UGRO, so the CLI reports its message without a stack.
 */
export function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && 'syscall' in e;
}
