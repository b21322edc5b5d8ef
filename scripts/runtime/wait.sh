#!/bin/sh
# UGRO host runtime: block until a run's runner has exited (it holds RUN_DIR/lock while alive),
# without polling; print its exit code. The controller keeps one of these open per run part.
# Usage: wait.sh RUN_DIR
flock "$1/lock" cat "$1/exit_code" 2>/dev/null
exit 0
