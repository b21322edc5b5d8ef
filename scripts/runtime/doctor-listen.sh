# UGRO host runtime: `ugro doctor`'s listener, one end of the pairwise reachability test.
# Usage: doctor-listen.sh PYTHON BASE_PORT SPAN TOKEN DEADLINE_S [EXPECT]
# Listens on every address at the first port of [BASE_PORT, BASE_PORT+SPAN) it can bind (the
# rendezvous ports: a running job may hold the first ones), answers @@listen port=P (busy= each
# port it could not bind), then sends TOKEN and a newline to each connection, so a peer knows it
# reached this test and not some other service. Ends when its stdin closes (the doctor is done, or
# its SSH connection is gone), after DEADLINE_S seconds, or once EXPECT connections were answered
# (a job's preflight: the port is free again before its launch), whichever comes first. Each
# connection is closed only after the peer closed it: the TIME_WAIT stays on the peer's side, never
# on this port.
set -u
[ $# -eq 5 ] || [ $# -eq 6 ] || ugro_fail 2 "usage: doctor-listen.sh PYTHON BASE_PORT SPAN TOKEN DEADLINE_S [EXPECT]"
for n in "$2" "$3" "$5" "${6:-0}"; do
  ugro_is_uint "$n" || ugro_fail 2 "BASE_PORT, SPAN, DEADLINE_S and EXPECT must be integers"
done
case $4 in '' | *[!A-Za-z0-9]*) ugro_fail 2 "TOKEN must be [A-Za-z0-9]+" ;; esac
exec "$1" -c '
import os, socket, sys, threading, time
base, span, token, deadline = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
expect = int(sys.argv[5])
busy, srv = [], None
for port in range(base, min(base + span, 65536)):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", port))
        s.listen(64)
        srv = s
        break
    except OSError:
        s.close()
        busy.append(port)
if srv is None:
    print("@@error\nwhy=no free port in %d..%d\n@@end" % (base, base + span - 1), flush=True)
    sys.exit(1)
print("@@listen\nport=%d\n%s@@end" % (port, "".join("busy=%d\n" % b for b in busy)), flush=True)
def stdin_closed():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    os._exit(0)
threading.Thread(target=stdin_closed, daemon=True).start()
srv.settimeout(0.5)
end = time.monotonic() + deadline
served = 0
while time.monotonic() < end and (expect == 0 or served < expect):
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    try:
        c.settimeout(2)
        c.sendall((token + "\n").encode())
        c.recv(1)  # the peer closes first
    except OSError:
        pass
    finally:
        c.close()
    served += 1
os._exit(0)
' "$2" "$3" "$4" "$5" "${6:-0}"
