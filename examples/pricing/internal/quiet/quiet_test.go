package quiet

import (
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// A refused value is reported by flag name and what it wants, never quoted;
// boolean flags still work without a value.
func TestFlags(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
	for _, tc := range []struct{ args, want string }{
		{"-n " + secret, "-n: want a whole number"},
		{"-d " + secret, "-d: want a duration such as 15m or 90s"},
		{"-b=" + secret, "-b: want true or false"},
	} {
		set := flag.NewFlagSet("x", flag.ContinueOnError)
		set.SetOutput(io.Discard)
		set.Int("n", 0, "")
		set.Duration("d", time.Second, "")
		set.Bool("b", false, "")
		bad := Flags(set)
		if err := set.Parse(strings.Fields(tc.args)); err == nil {
			t.Fatalf("%s: parsed", tc.args)
		}
		if *bad == nil || (*bad).Error() != tc.want || strings.Contains((*bad).Error(), secret) {
			t.Errorf("%s: report %v, want %q", tc.args, *bad, tc.want)
		}
	}
	set := flag.NewFlagSet("x", flag.ContinueOnError)
	b := set.Bool("b", false, "")
	bad := Flags(set)
	if err := set.Parse([]string{"-b"}); err != nil || !*b || *bad != nil {
		t.Fatalf("-b without a value: %v, %v, %v", err, *b, *bad)
	}
}

func TestPathless(t *testing.T) {
	const path = "/no/such/c2VjcmV0LXNlY3JldC1zZWNyZXQ"
	_, err := os.Open(path)
	if got := Pathless(err); strings.Contains(got.Error(), path) || !errors.Is(got, os.ErrNotExist) {
		t.Fatalf("Pathless = %v", got)
	}
	other := errors.New("other")
	if Pathless(other) != other {
		t.Fatal("a non-path error must pass unchanged")
	}
}
