# UGRO host runtime: `ugro doctor`'s connector, the other end of the pairwise reachability test.
# Usage: doctor-connect.sh PYTHON TIMEOUT_MS TOKEN PEER ADDRESS PORT [PEER ADDRESS PORT…]
# Connects to every ADDRESS:PORT at once from this host, over the real network, and reads the
# listener's TOKEN. Answers one @@connect block per peer: peer, result=ok|refused|timeout|
# unreachable|wrong-answer|error, ms (connect time), error (the socket's message).
set -u
[ $# -ge 6 ] && [ $(( ($# - 3) % 3 )) -eq 0 ] ||
  ugro_fail 2 "usage: doctor-connect.sh PYTHON TIMEOUT_MS TOKEN PEER ADDRESS PORT [PEER ADDRESS PORT…]"
ugro_is_uint "$2" || ugro_fail 2 "TIMEOUT_MS must be an integer"
py=$1 timeout_ms=$2 token=$3
shift 3
exec "$py" -c '
import errno, socket, sys, threading, time
timeout, token, rest = int(sys.argv[1]) / 1000.0, sys.argv[2], sys.argv[3:]
peers = [rest[i:i + 3] for i in range(0, len(rest), 3)]
out = [None] * len(peers)
def probe(i, peer, addr, port):
    t0 = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    result, err, ms = "ok", "", None
    try:
        s.connect((addr, int(port)))
        ms = (time.monotonic() - t0) * 1000
        got = b""
        while not got.endswith(b"\n") and len(got) < 200:
            b = s.recv(200)
            if not b:
                break
            got += b
        if got.strip().decode("ascii", "replace") != token:
            result, err = "wrong-answer", "something else answers on this port"
    except socket.timeout:
        result, err = "timeout", "no answer within %d ms" % (timeout * 1000)
    except ConnectionRefusedError as e:
        result, err = "refused", str(e)
    except OSError as e:
        result = "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
        err = str(e)
    finally:
        s.close()
    out[i] = "@@connect\npeer=%s\nresult=%s\n%serror=%s\n@@end" % (
        peer, result, "" if ms is None else "ms=%.3f\n" % ms, err.replace("\n", " ")[:200])
ts = [threading.Thread(target=probe, args=(i, *p)) for i, p in enumerate(peers)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(o for o in out if o), flush=True)
' "$timeout_ms" "$token" "$@"
