# UGRO host runtime: the health probe (controller/backends/health.ts parses and judges it).
# Usage: probe.sh PROJECT_DIR PYTHON
# Its own sections, older than the records format and kept for the captured outputs its parser
# is tested on: `@@NAME` lines (clock, hostname, os, kernel, python, gpu, disk), each followed
# by raw lines, and `@@end` at the very end. Reads torch's version and CUDA build from its
# files rather than importing it (an import takes seconds; health must answer fast).
echo "@@clock"; date +%s%N
echo "@@hostname"; hostname
echo "@@os"; if [ -r /etc/os-release ]; then . /etc/os-release; echo "$PRETTY_NAME"; else uname -s; fi
echo "@@kernel"; uname -r
echo "@@python"
"$2" - <<'PY' 2>&1
import sys, importlib.util, os, re
print("version=%d.%d.%d" % sys.version_info[:3])
print("executable=" + sys.executable)
spec = importlib.util.find_spec("torch")
if spec is None or not spec.submodule_search_locations:
    print("torch=none")
else:
    d = list(spec.submodule_search_locations)[0]
    try:
        src = open(os.path.join(d, "version.py")).read()
        v = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", src, re.M)
        c = re.search(r"^cuda\s*(?::\s*\S+\s*)?=\s*(?:['\"]([^'\"]+)|None)", src, re.M)
        print("torch=" + (v.group(1) if v else "unknown"))
        print("torch_cuda=" + ((c.group(1) or "none") if c else "none"))
    except OSError as e:
        print("torch=unknown")
PY
echo "python_rc=$?"
echo "@@gpu"
if command -v nvidia-smi >/dev/null 2>&1; then
  # A wedged driver can hang nvidia-smi for minutes; bound it so health always answers.
  t=""; command -v timeout >/dev/null 2>&1 && t="timeout -s KILL 10"
  # temperature.gpu and power.draw feed the controller's GPU telemetry (charts, /metrics); the PCIe
  # link width (current, max) the judge (a degraded link), in the same call: nvidia-smi is slow to start.
  $t nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version,temperature.gpu,power.draw,pci.bus_id,pcie.link.width.current,pcie.link.width.max \
    --format=csv,noheader,nounits 2>&1
  echo "gpu_rc=$?"
  # XID errors of this boot (the judge keeps the recent ones): the kernel log through journalctl
  # (users in adm or systemd-journal), else dmesg where it is readable (root, or dmesg_restrict=0).
  # `lines` says whether anything was readable at all: no kernel line is "cannot tell", not "no XID".
  echo "@@xid"
  if command -v journalctl >/dev/null 2>&1; then
    echo "source=journalctl"
    $t journalctl -k -b 0 --no-pager -q -o short-unix 2>/dev/null |
      awk '/NVRM: Xid/ { x[n % 20] = substr($0, 1, 300); n++ } { l++ }
        END { for (i = (n > 20 ? n - 20 : 0); i < n; i++) print "xid=" x[i % 20]; print "lines=" l + 0 }'
  elif dmesg >/dev/null 2>&1; then
    echo "source=dmesg"
    read -r up _ </proc/uptime && echo "uptime=$up"
    $t dmesg 2>/dev/null |
      awk '/NVRM: Xid/ { x[n % 20] = substr($0, 1, 300); n++ } { l++ }
        END { for (i = (n > 20 ? n - 20 : 0); i < n; i++) print "xid=" x[i % 20]; print "lines=" l + 0 }'
  else
    echo "source=none"
  fi
else
  echo "gpu_rc=notfound"
fi
echo "@@disk"
d="$1"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
df -Pk "$d" | tail -n 1
echo "@@end"
