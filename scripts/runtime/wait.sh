# UGRO host runtime: block until a run's runner has exited, without polling: the runner holds
# RUN_DIR/lock for its lifetime (launch.sh hands it over), so a shared flock returns the moment
# it is gone, even while its zombie waits to be reaped. The controller keeps one open per part.
# Usage: wait.sh RUN_DIR
# Answers @@wait with state=done and exit_code (torchrun's, empty if none was recorded), or
# state=missing when there is no such run dir.
[ $# -eq 1 ] || ugro_fail 2 "usage: wait.sh RUN_DIR"
[ -d "$1" ] || { printf '@@wait\nstate=missing\nexit_code=\n@@end\n'; exit 0; }
flock -s "$1/lock" true || ugro_fail 1 "cannot lock $1/lock"
printf '@@wait\nstate=done\n'
ugro_kv exit_code "$1/exit_code"
echo "@@end"
