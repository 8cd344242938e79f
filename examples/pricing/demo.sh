#!/usr/bin/env bash
# The pricing example end to end: a fresh key, the pricing server with
# tollgate in front of it, tokens minted with the tollgate CLI, and one call
# per rule of pricing.proto. Every step checks its outcome, so this script is
# also a test: it exits non-zero when any step does not behave as stated.
#
#   steps 1-2    the permission matrix: tollgate rules asks the running
#                server through reflection (which needs a token)
#   steps 3-15   the rules, each shown from pricing.proto before its call:
#                permissions, ownership, public and body-token methods, a
#                method with no rule denied, graceful stop, a denial log
#                without tokens
#   steps 16-23  throttling per consumer, a runaway stream cut message by
#                message, and renewal of tokens near their expiry, up to the
#                absolute end of a session
#   step 24      the counters move: a server with -metrics-listen, scraped
#                after allowed, denied, throttled and unruled calls
#   steps 25-29  OPTIONAL, only when redis-server is on PATH: two replicas
#                sharing one budget through Redis, a session revoked with
#                tollgate revoke and refused by both replicas at once, and
#                what each fail policy does once Redis is gone (the revoked
#                session stays refused) (TOLLGATE_REQUIRE_REDIS=1 makes a
#                missing redis-server a failure instead of a skip)
#
# Everything else runs on embedded defaults: in-memory throttling, a key
# generated for this run, loopback only. Run from anywhere:
# bash examples/pricing/demo.sh (or make demo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

echo "building bin/tollgate, bin/pricing-server, bin/pricing-client"
echo "(the first make demo on a clean machine compiles gRPC, protobuf and go-redis first: a few"
echo " minutes on two cores; later runs reuse Go's build cache and take seconds)"
go build -o bin/tollgate ./cmd/tollgate
go build -o bin/pricing-server ./examples/pricing/cmd/pricing-server
go build -o bin/pricing-client ./examples/pricing/cmd/pricing-client

TMP=$(mktemp -d)
PIDS=() # every process this script started and has not reaped yet
NFIFOS=0
cleanup() {
	local pid
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

# forget PID: the process has been reaped.
forget() {
	local keep=() pid
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		[[ $pid == "$1" ]] || keep+=("$pid")
	done
	PIDS=(${keep[@]+"${keep[@]}"})
}

# stop PID: SIGTERM, at most 15 s to exit (SIGKILL after that); sets
# STOP_RC to its exit status (137 when it had to be killed).
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "   pid $pid did not stop within 15 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	STOP_RC=0
	wait "$pid" || STOP_RC=$?
	forget "$pid"
}

bin/tollgate keygen -alg HS256 -out "$TMP/key" >/dev/null
echo "generated a fresh HS256 key (mode 0600, in a temporary directory)"

# start_server NAME ARGS...: starts pricing-server with ARGS and waits (30 s
# at most) for its one "listening on" line. Its stdout goes through a FIFO so
# that line can be read with a timeout; its stderr (the denial log) goes to
# $TMP/NAME.log. Sets SERVER_PID, SERVER_ADDR and SERVER_FD, the descriptor
# its further lines (such as "metrics on ...") can be read from.
start_server() {
	local name=$1 line="" fd=$((3 + NFIFOS))
	shift
	NFIFOS=$((NFIFOS + 1))
	mkfifo "$TMP/$name.out"
	bin/pricing-server -listen 127.0.0.1:0 -key "$TMP/key" "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	# One descriptor per server (3, 4, ...), kept open so that its stdout
	# never breaks.
	eval "exec $fd<\"\$TMP/\$name.out\""
	if ! read -r -t 30 line <&"$fd" || [[ "$line" != "listening on "* ]]; then
		echo "FAIL: pricing-server ($name) did not report its address (got: '$line')" >&2
		cat "$TMP/$name.log" >&2
		exit 1
	fi
	SERVER_ADDR=${line#listening on }
	SERVER_FD=$fd
}

start_server main
SERVER_A=$SERVER_PID
ADDR=$SERVER_ADDR
echo "pricing-server is listening on $ADDR"

mint() {
	bin/tollgate token issue -key "$TMP/key" -alg HS256 -iss tollgate-demo -aud pricing "$@"
}
READER=$(mint -sub carol -azp storefront -perms prices.read -claim seller_id=s-1)
SELLER=$(mint -sub alice -azp seller-portal -perms prices.read,prices.write -claim seller_id=s-1)
ADMIN=$(mint -sub ops -azp backoffice -perms prices.read,prices.write,prices.admin -claim seller_id=s-1)
echo "minted three tokens (15 minutes): reader (prices.read), seller s-1 (prices.read,"
echo "prices.write), admin (prices.read, prices.write, prices.admin)"

failures=0
step=0

PROTO=examples/pricing/proto/pricing/v1/pricing.proto

# rule_of RPC: prints the rpc's declaration in pricing.proto, options
# included: the rule the guard compiled for it.
rule_of() {
	echo "   rule in pricing.proto:"
	awk -v rpc="$1" '$0 ~ "^  rpc " rpc "\\(" { p = 1 } p { print "   |" $0 } p && /^  }$/ { exit }' "$PROTO"
}

# rpc_of CLIENT_ARGS...: the RPC a pricing-client command calls.
rpc_of() {
	local a
	for a in "$@"; do
		case $a in
		-*) ;;
		ping) echo Ping; return ;;
		get) echo GetPrice; return ;;
		list) echo ListPrices; return ;;
		set) echo SetPrice; return ;;
		delete) echo DeletePrice; return ;;
		import) echo ImportPrices; return ;;
		sync) echo SyncPrices; return ;;
		quote) echo QuotePrices; return ;;
		esac
	done
}

begin() {
	step=$((step + 1))
	echo
	echo "== $step. $1"
}

# check OK_STATUS MESSAGE: counts a failure unless OK_STATUS is 0.
check() {
	if [[ $1 -eq 0 ]]; then
		echo "   ok"
	else
		echo "   FAIL: $2" >&2
		failures=$((failures + 1))
	fi
}

# call HEADING TOKEN_NAME WANT_EXIT WANT_OUTPUT -- CLIENT_ARGS...
# runs pricing-client with the token (none for "-") and checks its exit status
# and that its output contains WANT_OUTPUT.
call() {
	local heading=$1 who=$2 want_exit=$3 want=$4
	shift 5
	local token=""
	case $who in
	reader) token=$READER ;;
	seller) token=$SELLER ;;
	admin) token=$ADMIN ;;
	looper) token=$LOOPER ;;
	-) ;;
	*) echo "demo.sh: unknown token $who" >&2; exit 2 ;;
	esac
	begin "$heading"
	rule_of "$(rpc_of "$@")"
	echo "   \$ pricing-client $* (token: ${who/-/none})"
	local out rc=0
	out=$(TOLLGATE_TOKEN=$token bin/pricing-client -addr "$ADDR" "$@") || rc=$?
	printf '%s\n' "$out" | sed 's/^/   /'
	if [[ $rc -ne $want_exit ]] || ! grep -qF -- "$want" <<<"$out"; then
		echo "   FAIL: expected exit status $want_exit and output containing: $want (got exit status $rc)" >&2
		failures=$((failures + 1))
	else
		echo "   ok"
	fi
}

# client ARGS...: runs pricing-client, shows and keeps its stdout (OUT),
# stderr (ERR) and exit status (RC).
client() {
	RC=0
	OUT=$(bin/pricing-client "$@" 2>"$TMP/client.err") || RC=$?
	ERR=$(cat "$TMP/client.err")
	echo "   \$ pricing-client $*"
	[[ -z $OUT ]] || printf '%s\n' "$OUT" | sed 's/^/   /'
	[[ -z $ERR ]] || printf '%s\n' "$ERR" | sed 's/^/   (stderr) /'
}

# summary: parses the "ok=X throttled=Y other=Z" line of OUT into N_OK,
# N_THROTTLED and N_OTHER; false when there is none.
summary() {
	local re='(^|'$'\n'')ok=([0-9]+) throttled=([0-9]+) other=([0-9]+)$'
	[[ $OUT =~ $re ]] || return 1
	N_OK=${BASH_REMATCH[2]} N_THROTTLED=${BASH_REMATCH[3]} N_OTHER=${BASH_REMATCH[4]}
}

# claim FILE NAME: the numeric claim NAME of the token in FILE (read without
# verification: the server verifies, this only shows).
claim() {
	{ bin/tollgate token inspect - <"$1" || true; } | sed -n 's/^ *"'"$2"'": \([0-9][0-9]*\),\{0,1\}$/\1/p'
}

# now_ms: the time in milliseconds (whole seconds on a bash without
# EPOCHREALTIME).
now_ms() {
	if [[ -n ${EPOCHREALTIME:-} ]]; then
		local t=${EPOCHREALTIME/[.,]/}
		echo $((10#$t / 1000))
	else
		echo $(($(date +%s) * 1000))
	fi
}

printf '%s\n' "$READER" >"$TMP/reader.token"
chmod 600 "$TMP/reader.token"

begin "the permission matrix: tollgate rules asks the running server through gRPC reflection (reflection needs a valid token; the reader's will do) and prints every method's compiled rule; -require-all is the CI lint: it fails naming any method without a rule"
echo "   \$ tollgate rules -addr $ADDR -token-file reader.token -require-all"
RC=0
OUT=$(bin/tollgate rules -addr "$ADDR" -token-file "$TMP/reader.token" -require-all 2>"$TMP/rules.err") || RC=$?
printf '%s\n' "$OUT" | sed 's/^/   /'
sed 's/^/   (stderr) /' "$TMP/rules.err"
RULES=$OUT
ok=1
if [[ $RC -eq 0 ]] && grep -q '^/pricing.v1.PriceService/SetPrice  *unary  *token  *all of prices.write  *seller_id = claim seller_id (bypass: prices.admin)  *5/1s burst 10 bucket writes' <<<"$OUT" &&
	grep -q '^/grpc.health.v1.Health/Check  *unary  *public' <<<"$OUT" &&
	grep -q '^/grpc.reflection.v1.ServerReflection/ServerReflectionInfo  *bidi stream  *token  *-' <<<"$OUT" &&
	! grep -q 'DENIED' <<<"$OUT"; then
	ok=0
fi
check $ok "expected exit status 0 (got $RC), SetPrice's rule, health public, reflection for any valid token, and no method without a rule"

begin "reflection shows every rule, so an anonymous caller may not read it -> tollgate rules without a token: Unauthenticated"
echo "   \$ tollgate rules -addr $ADDR"
RC=0
bin/tollgate rules -addr "$ADDR" >/dev/null 2>"$TMP/rules.err" || RC=$?
sed 's/^/   (stderr) /' "$TMP/rules.err"
ok=1
if [[ $RC -eq 1 ]] && grep -q 'Unauthenticated: missing access token' "$TMP/rules.err"; then ok=0; fi
check $ok "expected exit status 1 and Unauthenticated (got $RC)"

call "allowed read: get sku-1 with prices.read -> the price of sku-1" \
	reader 0 '{"sku":"sku-1","seller_id":"s-1","amount_cents":"100","currency":"USD"}' -- get sku-1
call "missing token: get sku-1 without a token -> Unauthenticated TOKEN_MISSING" \
	- 1 'error: Unauthenticated: missing access token [TOKEN_MISSING]' -- get sku-1
call "missing permission: set with only prices.read -> PermissionDenied PERMISSION_DENIED permission=prices.write" \
	reader 1 'error: PermissionDenied: permission denied [PERMISSION_DENIED permission=prices.write]' -- set sku-1 s-1 150 USD
call "own price: seller s-1 sets the price of its sku-1 -> stored" \
	seller 0 '{"sku":"sku-1","seller_id":"s-1","amount_cents":"150","currency":"USD"}' -- set sku-1 s-1 150 USD
call "foreign seller: seller s-1 sets a price of seller s-2 -> PermissionDenied NOT_OWNER field=seller_id" \
	seller 1 'error: PermissionDenied: not the owner of the resource [NOT_OWNER field=seller_id]' -- set sku-11 s-2 1 USD
call "admin bypass: prices.admin sets a price of seller s-2 -> stored" \
	admin 0 '{"sku":"sku-11","seller_id":"s-2","amount_cents":"1050","currency":"USD"}' -- set sku-11 s-2 1050 USD
call "public method: ping without a token -> ok" \
	- 0 '{"status":"ok"}' -- ping
call "client stream: seller s-1 imports two prices, ownership checked on each message -> imported 2" \
	seller 0 '{"imported":2}' -- import s-1 sku-2=250 sku-3=350
call "read back: list seller s-1's prices -> sku-2 now costs 250" \
	reader 0 '{"sku":"sku-2","seller_id":"s-1","amount_cents":"250","currency":"USD"}' -- list s-1
call "body token: quote with the token in access_token, no metadata -> the known prices, in order" \
	reader 0 '{"prices":[{"sku":"sku-11","seller_id":"s-2","amount_cents":"1050","currency":"USD"},{"sku":"sku-2","seller_id":"s-1","amount_cents":"250","currency":"USD"}]}' -- -body-token quote sku-11 sku-404 sku-2

begin "a method with no rule is denied: a client built from a newer pricing.proto calls PurgePrices, which this server neither serves nor has a rule for -> PermissionDenied PERMISSION_DENIED from the guard (deny by default), not grpc-go's Unimplemented, even for the admin"
echo "   rule in pricing.proto: none (no rpc PurgePrices)"
served=$(awk '$1 ~ "^/pricing.v1.PriceService/" { sub("^/pricing.v1.PriceService/", "", $1); printf "%s ", $1 }' <<<"$RULES")
echo "   tollgate rules (step 1) has a row for each of: ${served% }; none for PurgePrices"
echo "   (pricing-server has a grpc.UnknownServiceHandler, so a name it does not serve reaches the guard, which denies it)"
TOLLGATE_TOKEN=$ADMIN client -addr "$ADDR" call /pricing.v1.PriceService/PurgePrices
ok=1
if [[ $RC -eq 1 && $OUT == 'error: PermissionDenied: permission denied [PERMISSION_DENIED]' && -z $ERR ]] &&
	! grep -q 'PurgePrices' <<<"$RULES" && ! grep -q 'rpc PurgePrices(' "$PROTO" && [[ -n $served ]]; then
	ok=0
fi
check $ok "expected no rule for PurgePrices and exactly 'error: PermissionDenied: permission denied [PERMISSION_DENIED]' (exit status $RC)"

begin "graceful stop: SIGTERM -> pricing-server exits 0"
stop "$SERVER_A"
check "$STOP_RC" "pricing-server exited with status $STOP_RC"

begin "the server's denial log names reasons, never tokens"
sed 's/^/   /' "$TMP/main.log"
denials=$(grep -c 'call denied' "$TMP/main.log" || true)
norule=$(grep -c 'method=/pricing.v1.PriceService/PurgePrices .*cause="method has no rule"' "$TMP/main.log" || true)
leaked=0
for tok in "$READER" "$SELLER" "$ADMIN"; do
	if grep -qF -- "${tok##*.}" "$TMP/main.log"; then
		leaked=1
	fi
done
ok=1
if [[ $denials -eq 5 && $norule -eq 1 && $leaked -eq 0 ]]; then ok=0; fi
check $ok "expected 5 denials (reflection without a token, three calls, and PurgePrices as \"method has no rule\") and no token in the log (got $denials denials, $norule for PurgePrices, token leaked: $leaked)"

# --- Throttling and renewal ------------------------------------------------
#
# A second server, in-memory throttling as before. -renew-grace 250ms lets a
# call wait that long for the renewal it started, so the very call that
# presents a token near its expiry takes the successor home; with the default
# of 0 the successor would go to the next call with the same token.
echo
echo "--- throttling and renewal: a second pricing-server, started with -renew-grace 250ms"
start_server renewal -renew-grace 250ms
SERVER_B=$SERVER_PID
ADDR=$SERVER_ADDR
echo "pricing-server is listening on $ADDR"
LOOPER=$(mint -sub bot -azp looper -perms prices.read)

begin "a consumer stuck in a loop: 60 rapid gets from azp looper, GetPrice allows 20 at once and 20 a second -> throttled, ResourceExhausted RATE_LIMITED with a retry delay"
rule_of GetPrice
start_ms=$(now_ms)
TOLLGATE_TOKEN=$LOOPER client -addr "$ADDR" -repeat 60 get sku-1
elapsed_ms=$(($(now_ms) - start_ms))
ok=1
if summary; then
	echo "   ($N_OK admitted: the burst of 20, and what refilled in the ${elapsed_ms} ms the run took, start-up included)"
	if grep -qE '^error: ResourceExhausted: rate limit exceeded \[RATE_LIMITED bucket=/pricing.v1.PriceService/GetPrice\] \[retry_delay=[0-9.]+m?s\]$' <<<"$OUT" &&
		[[ $RC -eq 1 && $N_THROTTLED -gt 0 && $N_OK -ge 20 && $N_OTHER -eq 0 ]]; then
		ok=0
	fi
fi
check $ok "expected a RATE_LIMITED line and a summary with ok >= 20, throttled > 0, other=0 (exit status $RC)"

call "right after, another consumer (azp storefront) is unaffected: its own bucket -> the price of sku-1" \
	reader 0 '{"sku":"sku-1","seller_id":"s-1","amount_cents":"100","currency":"USD"}' -- get sku-1

begin "a runaway stream: one ImportPrices stream of 100 prices; every message is charged to the \"writes\" bucket (10 at once, 5 a second) -> the first messages are stored, then the stream ends with ResourceExhausted RATE_LIMITED before the handler sees the next"
rule_of ImportPrices
BULK=$(mint -sub importer -azp bulk-importer -perms prices.read,prices.write -claim seller_id=s-1)
prices=()
for i in $(seq 1 100); do prices+=("bulk-$i=$((100 + i))"); done
TOLLGATE_TOKEN=$BULK client -addr "$ADDR" import s-1 "${prices[@]}"
import_out=$OUT import_rc=$RC
TOLLGATE_TOKEN=$READER client -addr "$ADDR" list s-1 >/dev/null
stored=$(grep -c '"sku":"bulk-' <<<"$OUT" || true)
echo "   $stored of the 100 prices were stored before the stream was cut"
ok=1
if [[ $import_rc -eq 1 && $import_out =~ ^error:\ ResourceExhausted:\ rate\ limit\ exceeded\ \[RATE_LIMITED\ bucket=writes\]\ \[retry_delay=[0-9.]+m?s\]$ ]] &&
	((stored >= 10 && stored < 20)); then
	ok=0
fi
check $ok "expected RATE_LIMITED on the writes bucket and between 10 and 19 prices stored (exit status $import_rc, $stored stored)"

begin "renewal: a 15-minute token issued 11 minutes ago (inside its last third) in a token file -> the call succeeds, the server renews the token, the client writes the successor back"
rule_of GetPrice
mint -sub dave -azp price-widget -perms prices.read -ttl 15m -iat -11m >"$TMP/widget.token"
chmod 600 "$TMP/widget.token"
cp "$TMP/widget.token" "$TMP/widget.token.orig"
client -addr "$ADDR" -token-file "$TMP/widget.token" get sku-1
old_exp=$(claim "$TMP/widget.token.orig" exp)
new_exp=$(claim "$TMP/widget.token" exp)
old_auth=$(claim "$TMP/widget.token.orig" auth_time)
new_auth=$(claim "$TMP/widget.token" auth_time)
now=$(date +%s)
echo "   old token: exp in $((old_exp - now)) s, auth_time $old_auth"
echo "   new token: exp in $((new_exp - now)) s, auth_time $new_auth"
mode=$(ls -l "$TMP/widget.token" | cut -c1-10)
echo "   token file mode: $mode"
ok=1
if [[ $RC -eq 0 && $OUT == *'"sku":"sku-1"'* && $ERR =~ ^renewed\ token\ \(expires\ [0-9T:-]+Z\)$ ]] &&
	! cmp -s "$TMP/widget.token" "$TMP/widget.token.orig" &&
	((new_exp > old_exp && new_exp - now >= 840 && new_exp - now <= 960)) &&
	[[ $new_auth == "$old_auth" && $mode == -rw------- ]]; then
	ok=0
fi
check $ok "expected the price, 'renewed token (expires ...)' on stderr, and a new token in the file (mode 600) expiring in 15 min (+-60 s) with the same auth_time"

begin "the next call uses the renewed token from the file -> the price, and nothing to renew (the token is fresh)"
client -addr "$ADDR" -token-file "$TMP/widget.token" get sku-2
ok=1
if [[ $RC -eq 0 && $OUT == *'"sku":"sku-2"'* && -z $ERR ]]; then ok=0; fi
check $ok "expected the price of sku-2 and nothing on stderr (exit status $RC)"

begin "a session near its absolute limit: auth_time 7h55m ago, the 8 h maximum session ends in 5 min -> renewed, but the successor expires at auth_time + 8h (in 5 min), not in 15"
mint -sub erin -azp price-widget -perms prices.read -ttl 15m -iat -11m -auth-time -7h55m >"$TMP/late.token"
chmod 600 "$TMP/late.token"
late_auth=$(claim "$TMP/late.token" auth_time)
client -addr "$ADDR" -token-file "$TMP/late.token" get sku-1
new_exp=$(claim "$TMP/late.token" exp)
now=$(date +%s)
echo "   new token: exp in $((new_exp - now)) s; auth_time + 8h is in $((late_auth + 8 * 3600 - now)) s"
ok=1
if [[ $RC -eq 0 && $ERR == "renewed token (expires "* ]] &&
	((new_exp == late_auth + 8 * 3600 && new_exp - now >= 240 && new_exp - now <= 360)); then
	ok=0
fi
check $ok "expected a renewal whose exp is auth_time + 8h, about 300 s from now (exit status $RC)"

begin "a session past its absolute limit: auth_time 8h05m ago -> Unauthenticated TOKEN_EXPIRED, nothing renewed"
mint -sub frank -azp price-widget -perms prices.read -ttl 15m -iat -11m -auth-time -8h05m >"$TMP/over.token"
chmod 600 "$TMP/over.token"
cp "$TMP/over.token" "$TMP/over.token.orig"
client -addr "$ADDR" -token-file "$TMP/over.token" get sku-1
ok=1
if [[ $RC -eq 1 && $OUT == 'error: Unauthenticated: access token expired [TOKEN_EXPIRED]' && -z $ERR ]] &&
	cmp -s "$TMP/over.token" "$TMP/over.token.orig"; then
	ok=0
fi
check $ok "expected TOKEN_EXPIRED, no renewal and the token file untouched (exit status $RC)"

begin "graceful stop; the log counts the refusals by reason and holds none of the tokens, old or renewed"
stop "$SERVER_B"
grep -o 'reason=[A-Z_]*' "$TMP/renewal.log" | sort | uniq -c | sed 's/^ */   /'
leaked=0
for f in "$TMP"/widget.token "$TMP"/widget.token.orig "$TMP"/late.token "$TMP"/over.token; do
	tok=$(cat "$f")
	if grep -qF -- "${tok##*.}" "$TMP/renewal.log"; then
		leaked=1
	fi
done
for tok in "$LOOPER" "$BULK"; do
	if grep -qF -- "${tok##*.}" "$TMP/renewal.log"; then
		leaked=1
	fi
done
ok=1
if [[ $STOP_RC -eq 0 && $leaked -eq 0 ]] &&
	grep -q 'reason=RATE_LIMITED' "$TMP/renewal.log" && grep -q 'reason=TOKEN_EXPIRED' "$TMP/renewal.log"; then
	ok=0
fi
check $ok "expected exit status 0 (got $STOP_RC), RATE_LIMITED and TOKEN_EXPIRED in the log, and no token in it (leaked: $leaked)"

# --- Metrics ----------------------------------------------------------------

# What fetches /metrics: curl or wget when there is one, else bash's own
# /dev/tcp (a fresh machine may have neither).
if command -v curl >/dev/null; then
	FETCHER=curl
elif command -v wget >/dev/null; then
	FETCHER=wget
else
	FETCHER=bash
fi

# http_get URL: the body of a plain-HTTP GET of URL on stdout; false unless
# the answer is 200. With bash's /dev/tcp the request is HTTP/1.0, so the
# server closes the connection after the body.
http_get() {
	local url=$1 hostport path resp
	case $FETCHER in
	curl) curl -fsS --max-time 10 "$url"; return ;;
	wget) wget -q -T 10 -O - "$url"; return ;;
	esac
	hostport=${url#http://}
	path=/${hostport#*/}
	hostport=${hostport%%/*}
	# In a subshell: a failed exec redirection must not end the script.
	resp=$(
		exec 9<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&9
		cat <&9
	) || return 1
	[[ $resp == HTTP/1.[01]\ 200\ * ]] || return 1
	printf '%s\n' "${resp#*$'\r\n\r\n'}"
}

# metric NAME LABEL=\"VALUE\"...: the sum of the samples of NAME in SCRAPE
# whose labels include every one given; 0 when there is none.
metric() {
	local name=$1 lines label
	shift
	lines=$(grep "^$name{" <<<"$SCRAPE" || true)
	for label in "$@"; do
		lines=$(grep -F -- "$label" <<<"$lines" || true)
	done
	awk '{ s += $NF } END { print s + 0 }' <<<"$lines"
}

echo
echo "--- metrics: a third pricing-server, started with -metrics-listen 127.0.0.1:0, exports what the guard decides"
start_server metrics -metrics-listen 127.0.0.1:0
SERVER_M=$SERVER_PID
ADDR=$SERVER_ADDR
mline=""
if ! read -r -t 30 mline <&"$SERVER_FD" || [[ $mline != "metrics on http://"*"/metrics" ]]; then
	echo "FAIL: pricing-server (metrics) did not report its metrics address (got: '$mline')" >&2
	exit 1
fi
METRICS_URL=${mline#metrics on }
echo "pricing-server is listening on $ADDR, $mline"

begin "the counters move: 3 allowed gets, a set without prices.write, 60 looping gets from azp looper, and a call to PurgePrices (no rule) -> /metrics counts each, by method, decision and reason, and names the refused consumers"
rule_of GetPrice
for _ in 1 2 3; do TOLLGATE_TOKEN=$READER client -addr "$ADDR" get sku-1; done
TOLLGATE_TOKEN=$READER client -addr "$ADDR" set sku-1 s-1 150 USD
TOLLGATE_TOKEN=$LOOPER client -addr "$ADDR" -repeat 60 get sku-1
looped=1
if summary; then looped=0; fi
TOLLGATE_TOKEN=$ADMIN client -addr "$ADDR" call /pricing.v1.PriceService/PurgePrices
echo "   GET $METRICS_URL (with $FETCHER$([[ $FETCHER == bash ]] && echo ' /dev/tcp: neither curl nor wget is on PATH')): its tollgate_server_decisions_total and tollgate_consumer_refusals_total samples, scope labels cut"
SCRAPE="" scraped=1
if SCRAPE=$(http_get "$METRICS_URL"); then scraped=0; fi
grep -E '^tollgate_(server_decisions_total|consumer_refusals_total)\{' <<<"$SCRAPE" | sed -E 's/otel_scope_[a-z_]+="[^"]*",//g; s/^/   /' || true
D=tollgate_server_decisions_total
GET='rpc_method="pricing.v1.PriceService/GetPrice"'
SET='rpc_method="pricing.v1.PriceService/SetPrice"'
allowed=$(metric $D "$GET" 'tollgate_decision="allowed"')
throttled=$(metric $D "$GET" 'tollgate_decision="throttled"' 'tollgate_reason="RATE_LIMITED"')
denied=$(metric $D "$SET" 'tollgate_decision="denied"' 'tollgate_reason="PERMISSION_DENIED"')
unruled=$(metric $D 'rpc_method="_OTHER"' 'tollgate_decision="denied"' 'tollgate_reason="PERMISSION_DENIED"')
looper=$(metric tollgate_consumer_refusals_total "$GET" 'tollgate_consumer="azp:looper"' 'tollgate_decision="throttled"')
storefront=$(metric tollgate_consumer_refusals_total "$SET" 'tollgate_consumer="azp:storefront"' 'tollgate_decision="denied"')
if [[ $looped -eq 0 ]]; then
	echo "   the looping gets: ok=$N_OK throttled=$N_THROTTLED; so GetPrice allowed 3 + $N_OK = $((3 + N_OK)), throttled $N_THROTTLED"
fi
ok=1
if [[ $scraped -eq 0 && $looped -eq 0 ]] && ((N_THROTTLED > 0 && N_OTHER == 0)) &&
	((allowed == 3 + N_OK && throttled == N_THROTTLED && denied == 1 && unruled == 1)) &&
	((looper == N_THROTTLED && storefront == 1)); then
	ok=0
fi
check $ok "expected a scrape and, for GetPrice, allowed = 3 + ok and throttled = RATE_LIMITED = throttled; SetPrice PERMISSION_DENIED 1; _OTHER PERMISSION_DENIED 1; azp:looper throttled and azp:storefront denied among the consumers (scraped: $scraped; got allowed $allowed, throttled $throttled, denied $denied, _OTHER $unruled, looper $looper, storefront $storefront)"

stop "$SERVER_M"
if [[ $STOP_RC -ne 0 ]]; then
	echo "   FAIL: pricing-server (metrics) exited with status $STOP_RC" >&2
	failures=$((failures + 1))
fi

# --- Optional: Redis, budgets shared by replicas ----------------------------

# start_redis: a redis-server of this script's own on a free loopback port,
# no persistence, files in $TMP/redis. Sets REDIS_PID and REDIS_PORT.
start_redis() {
	local attempt i port
	mkdir -p "$TMP/redis"
	for ((attempt = 0; attempt < 5; attempt++)); do
		port=$((20000 + RANDOM % 40000))
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--dir "$TMP/redis" >"$TMP/redis/log" 2>&1 &
		REDIS_PID=$!
		PIDS+=("$REDIS_PID")
		for ((i = 0; i < 100; i++)); do
			if grep -q 'Ready to accept connections' "$TMP/redis/log"; then
				REDIS_PORT=$port
				return 0
			fi
			kill -0 "$REDIS_PID" 2>/dev/null || break # e.g. the port was taken
			sleep 0.1
		done
		stop "$REDIS_PID"
	done
	echo "FAIL: could not start redis-server; its last log:" >&2
	cat "$TMP/redis/log" >&2
	return 1
}

echo
if ! command -v redis-server >/dev/null; then
	if [[ ${TOLLGATE_REQUIRE_REDIS:-} == 1 ]]; then
		begin "TOLLGATE_REQUIRE_REDIS=1: the Redis steps must run -> redis-server on PATH"
		check 1 "redis-server is not on PATH"
	else
		echo "--- OPTIONAL Redis steps SKIPPED: redis-server is not on PATH (install it, e.g. apt-get install redis-server, to see replicas share one budget)"
	fi
else
	echo "--- OPTIONAL Redis steps: redis-server found, so two replicas share their budgets through a Redis of this script's own"
	start_redis
	echo "redis-server is listening on 127.0.0.1:$REDIS_PORT"
	start_server closed -redis "127.0.0.1:$REDIS_PORT" -throttle-fail closed
	SERVER_C=$SERVER_PID
	ADDR_C=$SERVER_ADDR
	start_server local -redis "127.0.0.1:$REDIS_PORT" -throttle-fail local
	SERVER_D=$SERVER_PID
	ADDR_D=$SERVER_ADDR
	echo "replica 1 (-throttle-fail closed) is listening on $ADDR_C, replica 2 (-throttle-fail local) on $ADDR_D"
	SPREAD=$(mint -sub bot2 -azp spread-looper -perms prices.read)

	begin "one budget across replicas: 60 rapid gets from azp spread-looper, alternating between the two replicas -> about 20 admitted in all (in-memory buckets would admit 20 per replica: 40)"
	start_ms=$(now_ms)
	TOLLGATE_TOKEN=$SPREAD client -addr "$ADDR_C,$ADDR_D" -repeat 60 get sku-1
	elapsed_ms=$(($(now_ms) - start_ms))
	ok=1
	refill=$((elapsed_ms / 50 + 2)) # one token per 50 ms, and rounding
	if summary; then
		echo "   ($N_OK admitted: the shared burst of 20, and what refilled in the ${elapsed_ms} ms the run took, at most $refill)"
		if ((N_OK >= 20 && N_OK <= 20 + refill && N_OK < 40 && N_OTHER == 0)); then ok=0; fi
	fi
	check $ok "expected between 20 and $((20 + refill)) (and fewer than 40) calls admitted in all, none failing otherwise"

	begin "revocation: a session answered by both replicas, revoked with tollgate revoke -sid -> TOKEN_REVOKED from both within a second"
	VICTIM=$(mint -sub dave -azp storefront -sid demo-session-1 -perms prices.read -claim seller_id=s-1)
	ok=0
	for a in "$ADDR_C" "$ADDR_D"; do
		TOLLGATE_TOKEN=$VICTIM client -addr "$a" get sku-1
		if [[ $RC -ne 0 ]]; then ok=1; fi
	done
	echo "   \$ tollgate revoke -redis 127.0.0.1:$REDIS_PORT -sid demo-session-1"
	REVOKED=$(bin/tollgate revoke -redis "127.0.0.1:$REDIS_PORT" -sid demo-session-1) || ok=1
	echo "   $REVOKED"
	revoked_ms=$(now_ms)
	for a in "$ADDR_C" "$ADDR_D"; do
		# Each replica applies it within a second (milliseconds, in
		# practice): ask until it refuses, for at most a second.
		while :; do
			TOLLGATE_TOKEN=$VICTIM client -addr "$a" get sku-1
			if [[ $RC -eq 1 && $OUT == *TOKEN_REVOKED* ]]; then break; fi
			if (($(now_ms) - revoked_ms > 1000)); then ok=1; break; fi
		done
	done
	echo "   (both replicas refused it $(($(now_ms) - revoked_ms)) ms after tollgate revoke returned, two client runs included)"
	check $ok "expected the price from both replicas, then TOKEN_REVOKED from both within a second of tollgate revoke (last exit status $RC)"

	begin "Redis goes away: the fail-closed replica refuses -> Unavailable"
	stop "$REDIS_PID"
	echo "   (redis-server stopped)"
	TOLLGATE_TOKEN=$READER client -addr "$ADDR_C" get sku-1
	ok=1
	if [[ $RC -eq 1 && $OUT == 'error: Unavailable: rate limiter unavailable' ]]; then ok=0; fi
	check $ok "expected Unavailable from the fail-closed replica (exit status $RC)"

	begin "... while the fail-local replica keeps serving from buckets of its own -> the price of sku-1"
	TOLLGATE_TOKEN=$READER client -addr "$ADDR_D" get sku-1
	ok=1
	if [[ $RC -eq 0 && $OUT == *'"sku":"sku-1"'* ]]; then ok=0; fi
	check $ok "expected the price from the fail-local replica (exit status $RC)"

	begin "... and the revoked session stays refused with Redis gone: each replica enforces the revocations it holds -> TOKEN_REVOKED"
	TOLLGATE_TOKEN=$VICTIM client -addr "$ADDR_D" get sku-1
	ok=1
	if [[ $RC -eq 1 && $OUT == *TOKEN_REVOKED* ]]; then ok=0; fi
	check $ok "expected TOKEN_REVOKED from the fail-local replica with Redis stopped (exit status $RC)"

	for pid in "$SERVER_C" "$SERVER_D"; do
		stop "$pid"
		if [[ $STOP_RC -ne 0 ]]; then
			echo "   FAIL: replica $pid exited with status $STOP_RC" >&2
			failures=$((failures + 1))
		fi
	done
fi

echo
if [[ $failures -ne 0 ]]; then
	echo "demo FAILED: $failures of $step steps did not behave as stated" >&2
	exit 1
fi
echo "demo passed: all $step steps behaved as stated"
