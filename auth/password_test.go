package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPassword(t *testing.T) {
	h := testHash(t)
	if cost, err := bcrypt.Cost(h); err != nil || cost != BcryptCost {
		t.Fatalf("cost %d, %v", cost, err)
	}
	if bytes.Contains(h, []byte(testPassword)) {
		t.Fatal("hash contains the password")
	}
	if err := CheckPassword(h, testPassword); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "correct horsE"} {
		if err := CheckPassword(h, pw); !errors.Is(err, ErrBadPassword) || !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("CheckPassword(%q) = %v", pw, err)
		}
	}
	if err := CheckPassword(nil, ""); !errors.Is(err, ErrBadPassword) {
		t.Errorf("no hash: %v", err)
	}
	if err := CheckPassword([]byte("garbage"), testPassword); !errors.Is(err, ErrBadPassword) {
		t.Errorf("garbage hash: %v", err)
	}
	// Salted: the same password hashes differently.
	h2, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(h, h2) {
		t.Fatal("two hashes of one password are equal")
	}
	if _, err := HashPassword(""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("p", MaxPasswordSize+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("long: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("p", MaxPasswordSize)); err != nil {
		t.Errorf("72 bytes: %v", err)
	}
}
