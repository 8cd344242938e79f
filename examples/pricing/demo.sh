#!/usr/bin/env bash
# The pricing example end to end: a fresh key, the pricing server with
# tollgate in front of it, tokens minted with the tollgate CLI, and one call
# per rule of pricing.proto. Every step checks its outcome, so this script is
# also a test: it exits non-zero when any step does not behave as stated.
#
# Run from anywhere: bash examples/pricing/demo.sh (or make demo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

echo "building bin/tollgate, bin/pricing-server, bin/pricing-client"
go build -o bin/tollgate ./cmd/tollgate
go build -o bin/pricing-server ./examples/pricing/cmd/pricing-server
go build -o bin/pricing-client ./examples/pricing/cmd/pricing-client

TMP=$(mktemp -d)
SERVER_PID=""
cleanup() {
	if [[ -n "$SERVER_PID" ]]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

bin/tollgate keygen -alg HS256 -out "$TMP/key" >/dev/null
echo "generated a fresh HS256 key (mode 0600, in a temporary directory)"

# The server's stdout goes through a FIFO so its one "listening on" line can
# be read with a timeout; its stderr (the denial log) goes to a file.
mkfifo "$TMP/server.out"
bin/pricing-server -listen 127.0.0.1:0 -key "$TMP/key" >"$TMP/server.out" 2>"$TMP/server.log" &
SERVER_PID=$!
exec 3<"$TMP/server.out"
line=""
if ! read -r -t 30 line <&3 || [[ "$line" != "listening on "* ]]; then
	echo "FAIL: pricing-server did not report its address (got: '$line')" >&2
	cat "$TMP/server.log" >&2
	exit 1
fi
ADDR=${line#listening on }
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
	-) ;;
	*) echo "demo.sh: unknown token $who" >&2; exit 2 ;;
	esac
	step=$((step + 1))
	echo
	echo "== $step. $heading"
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

step=$((step + 1))
echo
echo "== $step. graceful stop: SIGTERM -> pricing-server exits 0"
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
if [[ $rc -ne 0 ]]; then
	echo "   FAIL: pricing-server exited with status $rc" >&2
	failures=$((failures + 1))
else
	echo "   ok"
fi

step=$((step + 1))
echo
echo "== $step. the server's denial log names reasons, never tokens"
sed 's/^/   /' "$TMP/server.log"
denials=$(grep -c 'call denied' "$TMP/server.log" || true)
leaked=0
for tok in "$READER" "$SELLER" "$ADMIN"; do
	if grep -qF -- "${tok##*.}" "$TMP/server.log"; then
		leaked=1
	fi
done
if [[ $denials -ne 3 || $leaked -ne 0 ]]; then
	echo "   FAIL: expected 3 denials and no token in the log (got $denials denials, token leaked: $leaked)" >&2
	failures=$((failures + 1))
else
	echo "   ok"
fi

echo
if [[ $failures -ne 0 ]]; then
	echo "demo FAILED: $failures of $step steps did not behave as stated" >&2
	exit 1
fi
echo "demo passed: all $step steps behaved as stated"
