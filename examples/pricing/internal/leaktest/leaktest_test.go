package leaktest

import "testing"

func TestFlagError(t *testing.T) {
	for arg, want := range map[string]string{
		"-x":    "flag provided but not defined",
		"--x":   "flag provided but not defined",
		"---x":  "bad flag syntax",
		"-=x":   "bad flag syntax",
		"plain": "",
	} {
		if got := FlagError(arg); got != want {
			t.Errorf("FlagError(%q) = %q, want %q", arg, got, want)
		}
	}
}
