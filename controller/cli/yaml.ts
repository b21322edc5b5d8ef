/**
 * The yaml functions the CLI loads when a command needs them: `await import('./yaml.ts')`, never
 * `await import('yaml')`. In the bundle (scripts/build.mjs) a dynamic import of a CommonJS
 * package keeps only its default export, so `const { parse } = await import('yaml')` would be
 * undefined there; a static import inside this module is converted correctly.
 * Parsing goes through config/yaml-guard.ts (its limits), never the package's own parse.
 */
import type { Document } from 'yaml';
import { ValidationError } from '../../config/errors.ts';
import { parseYamlDocument, parseYamlValue } from '../../config/yaml-guard.ts';

export { stringify } from 'yaml';

/** A document's value; throws YamlError (a UgroError) for a syntax error or a limit, nothing else. */
export function parse(text: string): unknown {
  return parseYamlValue(text);
}

/**
 * A document to edit (comments and layout kept); syntax errors stay in doc.errors, as with the
 * package's parseDocument. A text past a limit throws a ValidationError naming `file`.
 */
export function parseDocument(text: string, file = 'the YAML text'): Document.Parsed {
  const r = parseYamlDocument(text);
  if (!r.ok) throw new ValidationError(file, [r.issue]);
  return r.doc;
}
