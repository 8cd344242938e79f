package session

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadKeyFileRefusesDevicesAndHugeFiles(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := LoadKeyFile("/dev/zero", "", HS256)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("/dev/zero: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LoadKeyFile(/dev/zero) did not return: it must refuse devices, not read them")
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("A", maxKeyFileSize+10)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(big, "", HS256); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized key file: %v", err)
	}
}

func TestSignRefusesSubSecondLifetime(t *testing.T) {
	k, err := NewHMACKey("", HS256, []byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewSigner(k)
	iat := time.Unix(10, 100e6)
	_, err = s.Sign(Claims{Issuer: "i", Subject: "s", Audience: []string{"a"}, IssuedAt: iat, ExpiresAt: iat.Add(400 * time.Millisecond)})
	if !errors.Is(err, ErrClaims) {
		t.Fatalf("exp and iat in the same second must be refused (they would be written equal): %v", err)
	}
}
