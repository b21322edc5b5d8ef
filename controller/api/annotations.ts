/** Annotation keys UGRO reads (kept free of imports: the CLI loads this at start). */

/** Who a job belongs to, for fair share. */
export const OWNER_ANNOTATION = 'ugro.dev/owner';
