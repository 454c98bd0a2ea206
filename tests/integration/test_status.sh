#!/bin/sh
# Status and metrics, as an operator and a scraper see them. After a known
# set of requests (whoami, health, bundle, a refused fetch, an invalid frame,
# an entry, two fetches), 'sockid status --json' counts exactly those, and
# 'sockid metrics' agrees with it and parses as Prometheus text exposition
# (python3-prometheus-client's parser, required, and a strict line-by-line
# check). The metrics socket serves the same families
# over HTTP/1.0 to curl, answers 404, 405 and 431, drops a client that sends
# nothing or half a request head without holding up anyone else, is not
# counted as a workload connection, and is removed on stop. As root, uid
# 12345 is refused both calls even with the admin socket at mode 0666.
#
# Usage: test_status.sh AGENT SOCKID IT_PROBE
set -u
[ $# -eq 3 ] || {
    echo "usage: $0 AGENT SOCKID IT_PROBE" >&2
    exit 2
}
AGENT=$1
SOCKID=$2
IT_PROBE=$3
. "$(dirname "$0")/lib.sh"
it_setup

PY=/usr/bin/python3
SOCK=$IT_TMP/agent.sock
ADMIN=$IT_TMP/agent-admin.sock
METRICS=$IT_TMP/metrics.sock
ERR=$IT_TMP/stderr
CONF=$IT_TMP/agent.conf
uid=$(id -u)
SOCKID_AGENT_SOCKET=$SOCK
SOCKID_ADMIN_SOCKET=$ADMIN
export SOCKID_AGENT_SOCKET SOCKID_ADMIN_SOCKET

printf '[agent]\nmetrics_socket = %s\n' "$METRICS" >"$CONF"
agent_start agent "$SOCK" --config "$CONF" --trust-domain example.org
PID=$AGENT_PID
agent_wait_ready "$PID" "$SOCK"
admin_wait_ready "$PID" "$ADMIN"

[ -S "$METRICS" ] || fail "the agent did not create its metrics socket $METRICS"
mode=$(stat -c %a "$METRICS")
[ "$mode" = 600 ] || fail "the metrics socket has mode $mode, expected 600 (metrics_socket_mode)"

# --- a known set of requests ------------------------------------------------
"$SOCKID" whoami >/dev/null 2>"$ERR" || fail "sockid whoami: $(cat "$ERR")"
"$SOCKID" whoami --json >/dev/null 2>"$ERR" || fail "sockid whoami --json: $(cat "$ERR")"
"$SOCKID" health >/dev/null 2>"$ERR" || fail "sockid health: $(cat "$ERR")"
"$SOCKID" bundle >/dev/null 2>"$ERR" || fail "sockid bundle: $(cat "$ERR")"
"$SOCKID" fetch --audience db >/dev/null 2>"$ERR"
s=$?
[ $s = 1 ] || fail "sockid fetch without an entry exited $s, expected 1 (no identity): $(cat "$ERR")"
# A frame that is no protobuf message: an invalid request.
$PY -c '
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(struct.pack(">I", 3) + b"\xff\xff\xff")
hdr = s.recv(4)
if len(hdr) != 4:
    sys.exit("no answer to an invalid frame")
' "$SOCK" || fail "an invalid frame was not answered"
"$SOCKID" entry create --spiffe-id spiffe://example.org/status --selector "unix:uid:$uid" \
    >/dev/null 2>"$ERR" || fail "sockid entry create: $(cat "$ERR")"
"$SOCKID" fetch --audience db >/dev/null 2>"$ERR" || fail "sockid fetch: $(cat "$ERR")"
"$SOCKID" fetch --audience db >/dev/null 2>"$ERR" || fail "second sockid fetch: $(cat "$ERR")"

# --- status ---------------------------------------------------------------
TEXT=$("$SOCKID" status 2>"$ERR") || fail "sockid status exited $?: $(cat "$ERR")"
note "$TEXT"
for line in "^sockid-agent 0\\.1\\.0, up " "^kernel  *SO_PEERPIDFD yes, PIDFD_GET_INFO yes, SO_PEERGROUPS yes$" \
    "^entries  *1$" "^requests  *whoami 2, fetch_token 3, fetch_bundle 1, validate 0, health 1, admin 2, invalid 1$" \
    "^refusals  *no_identity 1, invalid_request 1$" "^tokens  *1 signed, 1 from the cache$" \
    "^attestation  *p50 [0-9]*[um]s p90 [0-9]*[um]s p99 [0-9]*[um]s, 5 observed$"; do
    printf '%s\n' "$TEXT" | grep -q -- "$line" || fail "sockid status has no line matching '$line'"
done

STATUS=$("$SOCKID" status --json 2>"$ERR") || fail "sockid status --json exited $?: $(cat "$ERR")"
printf '%s' "$STATUS" >"$IT_TMP/status.json"
note "status: $STATUS"
$PY - "$IT_TMP/status.json" <<'EOF' || fail "sockid status --json: see above"
import json, sys
d = json.load(open(sys.argv[1]))
errors = []
def want(what, got, expected):
    if got != expected:
        errors.append("%s is %r, expected %r" % (what, got, expected))
want("version", d["version"], "0.1.0")
for f in ("so_peerpidfd", "pidfd_get_info", "so_peergroups"):
    # Kernel 6.18 here (DESIGN section 7) has all three.
    want("features." + f, d["features"][f], True)
if "unix" not in d["plugins"]:
    errors.append("plugins %r do not list unix" % d["plugins"])
want("entries", d["entries"], 1)
k = d["signing_key"]
if not isinstance(k["kid"], str) or len(k["kid"]) != 43:
    errors.append("signing_key.kid is %r" % k["kid"])
if not isinstance(k["age_seconds"], int) or k["age_seconds"] < 0:
    errors.append("signing_key.age_seconds is %r" % k["age_seconds"])
if d["keys"] < 1:
    errors.append("keys is %r" % d["keys"])
if d["event_loops"] < 1:
    errors.append("event_loops is %r" % d["event_loops"])
if not isinstance(d["uptime_ms"], int) or d["uptime_ms"] < 0:
    errors.append("uptime_ms is %r" % d["uptime_ms"])
# This status call's own connection is open.
if d["connections"]["open"] < 1:
    errors.append("connections.open is %r" % d["connections"]["open"])
want("requests", d["requests"], {"whoami": 2, "fetch_token": 3, "fetch_bundle": 1,
     "validate": 0, "health": 1, "admin": 3, "invalid": 1})
want("refusals", d["refusals"], {"peer_gone": 0, "credentials_changed": 0, "no_identity": 1,
     "attestor_failed": 0, "invalid_request": 1, "limit": 0, "not_admin": 0, "internal": 0})
want("tokens", d["tokens"], {"signed": 1, "cache_hits": 1})
# whoami and fetch_token attest; the rest do not.
att = d["latency"]["attestation"]
want("latency.attestation.count", att["count"], 5)
# Every request before this one is timed once its reply is out: 10 (the
# last may still be on its way into the histogram).
req = d["latency"]["request"]
if req["count"] not in (9, 10):
    errors.append("latency.request.count is %r, expected 10" % req["count"])
for name, l in (("request", req), ("attestation", att)):
    ps = [l["p50_us"], l["p90_us"], l["p99_us"]]
    if any(p is not None and (not isinstance(p, int) or p <= 0) for p in ps):
        errors.append("latency.%s percentiles are %r" % (name, ps))
    known = [p for p in ps if p is not None]
    if known != sorted(known):
        errors.append("latency.%s percentiles %r are not in order" % (name, ps))
if errors:
    sys.exit("\n".join(errors))
EOF

# --- metrics ----------------------------------------------------------------
"$SOCKID" metrics >"$IT_TMP/metrics.txt" 2>"$ERR" || fail "sockid metrics exited $?: $(cat "$ERR")"
# check_exposition FILE: parses as the text format; prints "name{labels} value"
# for every sample, sorted, and the families as "# family TYPE".
cat >"$IT_TMP/expo.py" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
if not text.endswith("\n"):
    sys.exit("the exposition does not end with a line feed")
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
value = r'"(?:[^"\\\n]|\\[\\"n])*"'
label = r"[a-zA-Z_][a-zA-Z0-9_]*=" + value
sample = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (\S+)$" % (name, label, label))
help_re = re.compile(r"^# HELP (%s) \S.*$" % name)
type_re = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % name)
types, helps, out = {}, set(), []
family = None
for n, line in enumerate(text.split("\n")[:-1], 1):
    m = help_re.match(line)
    if m:
        if m.group(1) in helps:
            sys.exit("line %d: a second HELP for %s" % (n, m.group(1)))
        helps.add(m.group(1))
        continue
    m = type_re.match(line)
    if m:
        if m.group(1) in types:
            sys.exit("line %d: a second TYPE for %s" % (n, m.group(1)))
        if m.group(1) not in helps:
            sys.exit("line %d: TYPE before HELP for %s" % (n, m.group(1)))
        types[m.group(1)] = m.group(2)
        family = m.group(1)
        continue
    m = sample.match(line)
    if not m:
        sys.exit("line %d is neither a comment nor 'name{labels} value': %r" % (n, line))
    float(m.group(3))
    base = m.group(1)
    if types.get(family) == "histogram":
        base = re.sub(r"_(bucket|sum|count)$", "", base)
    if base != family:
        sys.exit("line %d: sample %s outside its family (after TYPE %s)" % (n, m.group(1), family))
    out.append("%s%s %s" % (m.group(1), m.group(2) or "", m.group(3)))
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # scripts/test.sh installs it (python3-prometheus-client): a missing
    # parser is a broken test machine, not a pass.
    sys.exit("python3-prometheus-client is not installed for /usr/bin/python3: "
             "apt-get install python3-prometheus-client")
else:
    parsed = list(text_string_to_metric_families(text))
    samples = sum(len(f.samples) for f in parsed)
    if samples != len(out):
        sys.exit("prometheus_client read %d samples, the line check %d" % (samples, len(out)))
    for f in parsed:
        if f.type == "histogram":
            buckets = [s for s in f.samples if s.name.endswith("_bucket")]
            les = [float(s.labels["le"]) for s in buckets]
            counts = [s.value for s in buckets]
            count = [s.value for s in f.samples if s.name.endswith("_count")]
            if les != sorted(les) or les[-1] != float("inf"):
                sys.exit("%s: le bounds %r" % (f.name, les))
            if counts != sorted(counts) or count != [counts[-1]]:
                sys.exit("%s: buckets %r are not cumulative up to _count %r" % (f.name, counts, count))
for f, t in sorted(types.items()):
    print("# %s %s" % (f, t))
for line in sorted(out):
    print(line)
EOF
$PY "$IT_TMP/expo.py" "$IT_TMP/metrics.txt" >"$IT_TMP/metrics.samples" ||
    fail "sockid metrics is not valid exposition text (see above); it was:
$(cat "$IT_TMP/metrics.txt")"

# The counters agree with the status taken just before (the admin count has
# this metrics call on top).
$PY - "$IT_TMP/status.json" "$IT_TMP/metrics.samples" <<'EOF' || fail "sockid metrics disagrees with sockid status (see above)"
import json, sys
d = json.load(open(sys.argv[1]))
samples = {}
for line in open(sys.argv[2]):
    if not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        samples[k] = float(v)
errors = []
def want(key, expected):
    got = samples.get(key)
    if got != expected:
        errors.append("%s is %r, expected %r" % (key, got, expected))
for kind, n in d["requests"].items():
    want('sockid_requests_total{kind="%s"}' % kind, n + (1 if kind == "admin" else 0))
for reason, n in d["refusals"].items():
    want('sockid_refusals_total{reason="%s"}' % reason, n)
want("sockid_tokens_signed_total", d["tokens"]["signed"])
want("sockid_token_cache_hits_total", d["tokens"]["cache_hits"])
want("sockid_entries", d["entries"])
want("sockid_signing_keys", d["keys"])
want("sockid_event_loops", d["event_loops"])
want('sockid_build_info{version="%s"}' % d["version"], 1)
for f in ("so_peerpidfd", "pidfd_get_info", "so_peergroups"):
    want('sockid_kernel_feature{feature="%s"}' % f, 1 if d["features"][f] else 0)
for p in d["plugins"]:
    want('sockid_attestor_info{name="%s"}' % p, 1)
want("sockid_attestation_duration_seconds_count", d["latency"]["attestation"]["count"])
want('sockid_attestation_duration_seconds_bucket{le="+Inf"}', d["latency"]["attestation"]["count"])
n = samples.get("sockid_request_duration_seconds_count", -1)
if n < d["latency"]["request"]["count"]:
    errors.append("sockid_request_duration_seconds_count %r is below the status's %r"
                  % (n, d["latency"]["request"]["count"]))
if samples.get("sockid_signing_key_age_seconds", -1) < d["signing_key"]["age_seconds"]:
    errors.append("sockid_signing_key_age_seconds went back")
if errors:
    sys.exit("\n".join(errors))
EOF
note "sockid metrics: $(grep -c '^# ' "$IT_TMP/metrics.samples") families, counters agree with status"

# --- the metrics socket -------------------------------------------------------
accepted() {
    "$SOCKID" status --json 2>"$ERR" | $PY -c 'import json,sys; print(json.load(sys.stdin)["connections"]["accepted"])' ||
        fail "sockid status --json failed: $(cat "$ERR")"
}
before=$(accepted)
code=$(curl -sS -o "$IT_TMP/scrape.txt" -D "$IT_TMP/scrape.head" -w '%{http_code}' \
    --unix-socket "$METRICS" http://localhost/metrics 2>"$ERR") || fail "curl on the metrics socket: $(cat "$ERR")"
[ "$code" = 200 ] || fail "GET /metrics answered $code, expected 200"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$IT_TMP/scrape.head" ||
    fail "GET /metrics has no Content-Type text/plain; version=0.0.4: $(cat "$IT_TMP/scrape.head")"
$PY "$IT_TMP/expo.py" "$IT_TMP/scrape.txt" >"$IT_TMP/scrape.samples" ||
    fail "the metrics socket's answer is not valid exposition text"
grep '^# ' "$IT_TMP/metrics.samples" >"$IT_TMP/families.cli"
grep '^# ' "$IT_TMP/scrape.samples" >"$IT_TMP/families.http"
cmp -s "$IT_TMP/families.cli" "$IT_TMP/families.http" ||
    fail "the metrics socket and sockid metrics show different families:
$(diff "$IT_TMP/families.cli" "$IT_TMP/families.http")"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$METRICS" http://localhost/other)
[ "$code" = 404 ] || fail "GET /other answered $code, expected 404"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --unix-socket "$METRICS" http://localhost/metrics)
[ "$code" = 405 ] || fail "POST /metrics answered $code, expected 405"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' a)" \
    --unix-socket "$METRICS" http://localhost/metrics)
[ "$code" = 431 ] || fail "a 5000-byte header answered $code, expected 431"
after=$(accepted)
# Only the second status call's own connection is new: scrapes are not
# workload or admin connections.
[ $((after - before)) = 1 ] ||
    fail "connections accepted went from $before to $after over four scrapes and one status call"
note "metrics socket: 200 with the same families, 404, 405, 431; scrapes not counted as connections"

# A client that sends nothing, and one that stops halfway through its
# request head, hold up neither the scrapes nor the workloads, and are
# dropped after the metrics timeout (2 s).
$PY - "$METRICS" "$SOCK" "$IT_PROBE" <<'EOF' || fail "slow metrics clients: see above"
import socket, subprocess, sys, time
metrics, sock, probe = sys.argv[1:4]
silent = socket.socket(socket.AF_UNIX)
silent.connect(metrics)
half = socket.socket(socket.AF_UNIX)
half.connect(metrics)
half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
t0 = time.monotonic()
r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1",
                    "--unix-socket", metrics, "http://localhost/metrics"],
                   capture_output=True, text=True)
if r.stdout != "200":
    sys.exit("with slow clients connected, a scrape got %r" % r.stdout)
if subprocess.run([probe, "whoami", sock], capture_output=True).returncode != 0:
    sys.exit("with slow clients connected, a whoami was not served")
if time.monotonic() - t0 > 1.5:
    sys.exit("with slow clients connected, a scrape and a whoami took %.1f s" % (time.monotonic() - t0))
for name, s in (("silent", silent), ("half", half)):
    s.settimeout(8)
    data = s.recv(1)
    took = time.monotonic() - t0
    if data != b"":
        sys.exit("the %s client got %r instead of a close" % (name, data))
    if took < 1.5 or took > 6:
        sys.exit("the %s client was dropped after %.1f s, expected about 2" % (name, took))
EOF
note "slow metrics clients: scrapes and workloads served meanwhile; both dropped after ~2 s"

# --- who may ask ------------------------------------------------------------
if [ "$uid" = 0 ]; then
    chmod 0666 "$ADMIN" || fail "chmod 0666 $ADMIN"
    for cmd in status metrics; do
        setpriv --reuid 12345 --regid 12345 --clear-groups "$SOCKID" "$cmd" >"$IT_TMP/out" 2>"$ERR"
        s=$?
        [ $s = 1 ] || fail "sockid $cmd as uid 12345 exited $s, expected 1 (refused): $(cat "$IT_TMP/out" "$ERR")"
        grep -q "permission denied: uid 12345 is not an admin" "$ERR" ||
            fail "sockid $cmd as uid 12345 did not say why: $(cat "$ERR")"
        [ -s "$IT_TMP/out" ] && fail "sockid $cmd as uid 12345 printed: $(cat "$IT_TMP/out")"
    done
    # The metrics socket keeps its mode 0600.
    code=$(setpriv --reuid 12345 --regid 12345 --clear-groups curl -s -o /dev/null \
        -w '%{http_code}' --unix-socket "$METRICS" http://localhost/metrics)
    [ "$code" = 000 ] || fail "uid 12345 scraped the mode-0600 metrics socket (HTTP $code)"
    n=$("$SOCKID" status --json 2>"$ERR" | $PY -c 'import json,sys; print(json.load(sys.stdin)["refusals"]["not_admin"])') ||
        fail "sockid status --json as root: $(cat "$ERR")"
    [ "$n" = 2 ] || fail "after two refused calls, refusals.not_admin is $n, expected 2"
    note "uid 12345 is refused status and metrics (not_admin counted twice) and cannot scrape"
else
    skip_note "not root: the non-admin refusal (uid 12345) is not checked"
fi

# --- stop -----------------------------------------------------------------
agent_stop "$PID" "$SOCK" TERM
if [ -e "$METRICS" ] || [ -L "$METRICS" ]; then
    fail "after SIGTERM the agent left its metrics socket $METRICS behind"
fi
note "stopped; the metrics socket is gone"
echo "PASS: test_status"
