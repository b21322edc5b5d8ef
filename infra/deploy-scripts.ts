/**
 * Pure builders of the scripts that deploy a tree of files to a host and remove it again (the
 * scripts/ and pixi deployments of the Pulumi program), with a manifest so a second run changes
 * nothing. Same rules as infra/scripts.ts: typed inputs, every value through shQuote.
 */

import { assert, UgroError } from '../config/errors.ts';
import type { TreeFile } from '../config/hash.ts';
import { shQuote as q } from '../config/quote.ts';
import { prelude } from './script-prelude.ts';

export interface DeployTreeInput {
  host: string;
  /** Step name in messages: "scripts" or "runtime". */
  label: string;
  /** Directory on the host the files go to. */
  dest: string;
  /** Where the copy step put the files (CopyToRemote leaves them in STAGE/<sourceBase>). */
  stage: string;
  /** Base name of the local source directory. */
  sourceBase: string;
  /** Parent of all stages of this label; older stages are pruned. */
  stageRoot: string;
  files: TreeFile[];
}

const MANIFEST = '.ugro-manifest';

/** Refuses odd relative paths before they reach a script: they are names of local files (a newline is legal). */
function checkRel(p: string): void {
  if (!p || p.startsWith('/') || p.split('/').some((s) => s === '..' || s === '.' || s === '') || /[\n\r]/.test(p)) {
    throw new UgroError(`bad relative path ${JSON.stringify(p)}: rename that file (no line break in its name)`);
  }
}

/**
 * Installs the staged files into `dest`, byte-exact and with their modes, touching only files
 * whose hash differs; removes files it deployed before that left the tree (listed in
 * DEST/.ugro-manifest), never any other file.
 */
export function deployTreeScript(i: DeployTreeInput): string {
  for (const f of i.files) {
    checkRel(f.path);
    assert(/^[0-9a-f]{64}$/.test(f.sha256), () => `deployTreeScript: bad sha256 for ${f.path}`); // hashed by UGRO
  }
  checkRel(i.sourceBase);
  const list = i.files.map((f) => f.path).join('\n');
  const puts = i.files.map((f) => `put ${q(f.path)} ${f.sha256} ${f.mode}`).join('\n');
  const first = i.files[0]?.path ?? '';
  return `${prelude(i.host, i.label)}
dest=${q(i.dest)}
stage=${q(i.stage)}
stage_root=${q(i.stageRoot)}
label=${q(i.label)}
list=${q(list)}
manifest="$dest/${MANIFEST}"
updated=0 kept=0 removed=0
mkdir -p "$dest" || fail "cannot create $dest: sudo install -d -o $(id -un) $dest"
# CopyToRemote puts a directory at STAGE/<name>; a plain upload puts its files at STAGE.
root=''
first=${q(first)}
if [ -n "$first" ]; then
  if [ -f "$stage/"${q(i.sourceBase)}"/$first" ]; then root="$stage/"${q(i.sourceBase)}; \
elif [ -f "$stage/$first" ]; then root=$stage; fi
fi
put() {
  rel=$1 want=$2 mode=$3 dst="$dest/$1"
  if [ -f "$dst" ] && [ ! -L "$dst" ] && [ "$(sha256sum < "$dst" | cut -d' ' -f1)" = "$want" ]; then
    if [ "$(stat -c %a "$dst")" != "$mode" ]; then chmod "$mode" "$dst"; updated=$((updated + 1)); \
say "mode $mode: $rel"; else kept=$((kept + 1)); fi
    return 0
  fi
  [ -n "$root" ] && [ -f "$root/$rel" ] || \
fail "$label: the staged copy of $rel is missing under $stage: run pulumi up again \
(or pulumi up --replace the $host-$label-copy resource)"
  got=$(sha256sum < "$root/$rel" | cut -d' ' -f1)
  [ "$got" = "$want" ] || \
fail "$label: the staged $rel has sha256 $got, expected $want: the copy is stale or corrupt; run pulumi up again"
  mkdir -p "$(dirname "$dst")"
  tmp="$dst.ugro-tmp.$$"
  cp "$root/$rel" "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dst" || \
{ rm -f "$tmp"; fail "$label: cannot write $dst: check the permissions of $dest"; }
  updated=$((updated + 1)); say "updated $rel"
}
${puts}
# Files this step deployed before that are gone from the tree now (only those: other files stay).
if [ -f "$manifest" ]; then
  while IFS= read -r rel; do
    case $rel in '' | /* | .. | ../* | */../* | */..) continue ;; esac
    if ! printf '%s\\n' "$list" | grep -qxF -- "$rel"; then
      rm -f -- "$dest/$rel"; removed=$((removed + 1)); say "removed $rel (no longer in the tree)"
    fi
  done < "$manifest"
fi
if [ -n "$list" ]; then printf '%s\\n' "$list" > "$manifest.tmp.$$"; else : > "$manifest.tmp.$$"; fi
if cmp -s "$manifest.tmp.$$" "$manifest"; then rm -f "$manifest.tmp.$$"; else mv -f "$manifest.tmp.$$" "$manifest"; fi
# Older stages of this tree are no longer needed.
for s in "$stage_root/$label"-*; do
  [ -d "$s" ] && [ "$s" != "$stage" ] && rm -rf -- "$s" || true
done
if [ $((updated + removed)) -eq 0 ]; then say "unchanged: $kept files in $dest match"; \
else say "changed: $updated updated, $removed removed, $kept unchanged in $dest"; fi
`;
}

export interface RemoveTreeInput {
  host: string;
  label: string;
  dest: string;
}

/**
 * `pulumi destroy` of a deployed tree: removes exactly the files it deployed (and directories
 * they leave empty), never other files. Staged copies are left alone: when the install is
 * replaced, this runs first and the new install still needs its stage.
 */
export function removeTreeScript(i: RemoveTreeInput): string {
  return `${prelude(i.host, i.label)}
dest=${q(i.dest)}
manifest="$dest/${MANIFEST}"
n=0
if [ -f "$manifest" ]; then
  while IFS= read -r rel; do
    case $rel in '' | /* | .. | ../* | */../* | */..) continue ;; esac
    [ -e "$dest/$rel" ] && { rm -f -- "$dest/$rel"; n=$((n + 1)); }
    d=$(dirname "$rel")
    while [ "$d" != . ]; do rmdir "$dest/$d" 2>/dev/null || break; d=$(dirname "$d"); done
  done < "$manifest"
  rm -f "$manifest"
fi
rmdir "$dest" 2>/dev/null || true
if [ "$n" -eq 0 ]; then say "unchanged: nothing deployed in $dest"; \
else say "changed: removed $n deployed files from $dest (other files left in place)"; fi
`;
}
