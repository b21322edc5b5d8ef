/**
 * The yaml functions the CLI loads when a command needs them: `await import('./yaml.ts')`, never
 * `await import('yaml')`. In the bundle (scripts/build.mjs) a dynamic import of a CommonJS
 * package keeps only its default export, so `const { parse } = await import('yaml')` would be
 * undefined there; a static import inside this module is converted correctly.
 */
export { parse, parseDocument, stringify } from 'yaml';
