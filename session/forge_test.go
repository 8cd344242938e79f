package session_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/session"
)

// A Session cannot be forged outside tollgate: every field is unexported,
// and what the fields hold has a type of an internal package, which only
// the verifier (package token) fills in. Code elsewhere can make only the
// zero Session, and it holds nothing.
func TestSessionCannotBeForged(t *testing.T) {
	walk := func(path string, ty reflect.Type) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			if f.IsExported() {
				t.Errorf("session.Session%s.%s is exported: code outside the verifier could set it", path, f.Name)
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
				if !strings.Contains(f.Type.PkgPath(), "/internal/") {
					t.Errorf("session.Session%s.%s has type %s, outside an internal package", path, f.Name, f.Type)
				}
			}
		}
	}
	walk("", reflect.TypeFor[session.Session]())

	var s session.Session
	if s.Subject() != "" || s.ID() != "" || s.Issuer() != "" || s.Consumer() != "" || s.ConsumerKey() != "" ||
		s.Permissions() != nil || len(s.ClaimNames()) != 0 || s.Audience() != nil || !s.ValidUntil().IsZero() {
		t.Fatalf("the zero Session holds something: %v", &s)
	}
	for _, p := range []string{"", "*", "a", "a.b", "a.*"} {
		if s.Has(p) {
			t.Errorf("the zero Session grants %q", p)
		}
	}
	if _, ok := s.Claim("sub"); ok {
		t.Error("the zero Session has a claim")
	}
	if _, ok := session.FromContext(session.NewContext(context.Background(), nil)); ok {
		t.Error("FromContext reports a nil session")
	}
}
