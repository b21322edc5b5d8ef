# UGRO host runtime: the content hash of the scripts the controller deployed to this host.
# Usage: scripts-hash.sh SCRIPTS_DIR [HASH]
#   with HASH (hex), first record it in SCRIPTS_DIR/.ugro-scripts-hash (atomically), after the
#   controller uploaded the tree it describes.
# Answers @@scripts-hash with hash= (empty when none was recorded).
[ $# -eq 1 ] || [ $# -eq 2 ] || ugro_fail 2 "usage: scripts-hash.sh SCRIPTS_DIR [HASH]"
marker=$1/.ugro-scripts-hash
if [ $# -eq 2 ]; then
  case $2 in '' | *[!0-9a-f]*) ugro_fail 2 "HASH must be lower-case hex" ;; esac
  [ ${#2} -le 128 ] || ugro_fail 2 "HASH is too long"
  mkdir -p "$1" && echo "$2" >"$marker.tmp.$$" && mv -f "$marker.tmp.$$" "$marker" ||
    ugro_fail 1 "cannot write $marker"
fi
echo "@@scripts-hash"
ugro_kv hash "$marker"
echo "@@end"
