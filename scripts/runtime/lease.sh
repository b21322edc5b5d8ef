# UGRO host runtime: one controller's lease on this host, so two controllers never book it twice.
# Usage: lease.sh LEASE_FILE OWNER TTL_SECONDS acquire|release
#   OWNER is data (it may hold spaces, quotes, $): only ever compared and printed, never run.
#   Under flock on LEASE_FILE.lock, the current owner and expiry (this host's clock, seconds)
#   are read from LEASE_FILE (owner= and expires= lines). acquire takes the lease when it is
#   free, expired or already OWNER's, writing owner and now+TTL atomically; release removes it
#   only when OWNER holds it.
# Answers @@lease with state=held|taken|released|free, owner= (the holder, for taken: the other
# controller) and expires_in= (seconds left).
[ $# -eq 4 ] || ugro_fail 2 "usage: lease.sh LEASE_FILE OWNER TTL_SECONDS acquire|release"
file=$1 owner=$2 ttl=$3 mode=$4
case $mode in acquire | release) ;; *) ugro_fail 2 "MODE must be acquire or release" ;; esac
ugro_is_uint "$ttl" && [ ${#ttl} -le 9 ] && [ "$ttl" -ge 1 ] || ugro_fail 2 "TTL_SECONDS must be a positive integer"
[ -n "$owner" ] && [ ${#owner} -le 300 ] || ugro_fail 2 "OWNER must be 1 to 300 characters"
nl='
'
case $owner in *"$nl"* | *"$(printf '\r')"*) ugro_fail 2 "OWNER must be one line" ;; esac
case $file in */*) mkdir -p "${file%/*}" || ugro_fail 1 "cannot create ${file%/*}" ;; esac
exec 8>"$file.lock" || ugro_fail 1 "cannot open $file.lock"
flock -w 10 8 || ugro_fail 1 "$file.lock stayed locked for 10 s"
now=$(date +%s)
cur= exp=0
if [ -f "$file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
    owner=*) cur=${line#owner=} ;;
    expires=*) exp=${line#expires=} ;;
    esac
  done <"$file"
fi
# A torn or foreign file counts as expired.
ugro_is_uint "$exp" || { cur= exp=0; }
answer() { printf '@@lease\nstate=%s\nowner=%s\nexpires_in=%s\n@@end\n' "$1" "$2" "$3"; exit 0; }
if [ "$mode" = release ]; then
  if [ "$cur" = "$owner" ]; then
    rm -f -- "$file" || ugro_fail 1 "cannot remove $file"
    answer released "" 0
  fi
  [ -n "$cur" ] && [ "$exp" -gt "$now" ] && answer taken "$cur" $((exp - now))
  answer free "" 0
fi
if [ -z "$cur" ] || [ "$exp" -le "$now" ] || [ "$cur" = "$owner" ]; then
  printf 'owner=%s\nexpires=%s\n' "$owner" $((now + ttl)) >"$file.tmp.$$" && mv -f -- "$file.tmp.$$" "$file" ||
    ugro_fail 1 "cannot write $file"
  answer held "$owner" "$ttl"
fi
answer taken "$cur" $((exp - now))
