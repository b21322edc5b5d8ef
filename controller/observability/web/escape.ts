/**
 * PURE: escaping for everything the dashboard writes into HTML. Job names, args, env, log lines,
 * messages and annotations come from people and from jobs; none of it may become markup.
 */

const HTML: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text (and attribute values in double quotes) for HTML. */
export function escapeHtml(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => HTML[c]);
}

/**
 * JSON inside `<script type="application/json">`: `<` is escaped so that no `</script>` (or
 * `<!--`) in a value can end the element; U+2028/2029 for old parsers.
 */
export function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** Terminal control sequences and other control characters out of a log line (tabs kept). */
export function cleanLogLine(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return s.replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}
