package token

import (
	"reflect"
	"testing"
)

// Verify hands out shared VerifyError values; an exported field would let
// one caller rewrite the cause every later caller sees.
func TestVerifyErrorHasNoExportedFields(t *testing.T) {
	typ := reflect.TypeOf(VerifyError{})
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() {
			t.Errorf("VerifyError.%s is exported: shared error values would be writable", f.Name)
		}
	}
	if got := errSignature.(*VerifyError).Cause(); got != "signature invalid" {
		t.Fatalf("Cause() = %q", got)
	}
}
