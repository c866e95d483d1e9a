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

// TestHashPasswordCost: the cost given is the cost stored in the hash,
// and one outside bcrypt's range is refused.
func TestHashPasswordCost(t *testing.T) {
	h, err := HashPasswordCost("pw", MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost(h); err != nil || c != MinBcryptCost {
		t.Fatalf("cost %d %v, want %d", c, err, MinBcryptCost)
	}
	if err := CheckPassword(h, "pw"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{MinBcryptCost - 1, MaxBcryptCost + 1} {
		if _, err := HashPasswordCost("pw", c); !errors.Is(err, ErrInvalid) {
			t.Errorf("cost %d: %v, want ErrInvalid", c, err)
		}
	}
}
