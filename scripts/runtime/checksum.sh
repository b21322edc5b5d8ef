# UGRO host runtime: the size and SHA-256 of one regular file (a checkpoint copied between hosts
# is compared on both ends).
# Usage: checksum.sh FILE
# Answers @@checksum with size (bytes) and sha256; a missing file, a symlink or anything but a
# regular file is an error.
[ $# -eq 1 ] || ugro_fail 2 "usage: checksum.sh FILE"
[ -f "$1" ] && [ ! -L "$1" ] || ugro_fail 1 "$1 is not a regular file"
size=$(wc -c <"$1") || ugro_fail 1 "cannot read $1"
sum=$(sha256sum <"$1") || ugro_fail 1 "sha256sum failed on $1"
printf '@@checksum\nsize=%s\nsha256=%s\n@@end\n' "$size" "${sum%% *}"
