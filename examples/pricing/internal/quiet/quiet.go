// Package quiet keeps what a user typed out of the pricing programs' error
// messages: a key or a token pasted in the wrong place must never be
// printed back. The programs also pass every message through
// token.Redact; this package makes sure their own messages never need it.
package quiet

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"time"
)

// Flags wraps every flag of set so that a value it refuses is reported as
// the flag's name and what it wants, never the value: the flag package's own
// message ("invalid value %q for flag -x") quotes it. Call it after defining
// the flags; after a failed Parse, the error it returns points to that
// report, or to nil when Parse failed for another reason (an unknown flag).
func Flags(set *flag.FlagSet) *error {
	bad := new(error)
	set.VisitAll(func(f *flag.Flag) { f.Value = value{f.Value, f.Name, bad} })
	return bad
}

type value struct {
	flag.Value
	name string
	bad  *error
}

func (v value) Set(s string) error {
	err := v.Value.Set(s)
	if err != nil && *v.bad == nil {
		want := "invalid value"
		if g, ok := v.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case bool:
				want = "want true or false"
			case int:
				want = "want a whole number"
			case time.Duration:
				want = "want a duration such as 15m or 90s"
			}
		}
		*v.bad = fmt.Errorf("-%s: %s", v.name, want)
	}
	return err
}

// IsBoolFlag keeps boolean flags usable without a value.
func (v value) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Pathless returns the cause of an os error without the path it names (the
// path may be a key the user pasted where a path belongs).
func Pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
