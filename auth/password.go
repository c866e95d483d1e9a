package auth

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// BcryptCost is the bcrypt cost HashPassword uses; MinBcryptCost and
// MaxBcryptCost bound HashPasswordCost's.
const (
	BcryptCost    = 10
	MinBcryptCost = bcrypt.MinCost
	MaxBcryptCost = bcrypt.MaxCost
)

// MaxPasswordSize is the longest password accepted, in bytes: bcrypt
// reads at most 72 bytes and refuses longer input, so longer passwords
// are refused rather than silently truncated.
const MaxPasswordSize = 72

// HashPassword returns a bcrypt hash (cost BcryptCost, random salt) of
// pw. It is slow on purpose (tens of milliseconds): the member that
// receives a request hashes before proposing, never in apply. An empty
// password or one over MaxPasswordSize bytes is ErrInvalid.
func HashPassword(pw string) ([]byte, error) { return HashPasswordCost(pw, BcryptCost) }

// HashPasswordCost is HashPassword at another bcrypt cost (MinBcryptCost
// to MaxBcryptCost; each step doubles the work). The cost is stored in
// the hash, so checking a password costs what hashing it did.
func HashPasswordCost(pw string, cost int) ([]byte, error) {
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d not in %d..%d", ErrInvalid, cost, MinBcryptCost, MaxBcryptCost)
	}
	if pw == "" {
		return nil, fmt.Errorf("%w: empty password", ErrInvalid)
	}
	if len(pw) > MaxPasswordSize {
		return nil, fmt.Errorf("%w: password is %d bytes (limit %d)", ErrInvalid, len(pw), MaxPasswordSize)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return nil, fmt.Errorf("auth: hashing password: %w", err)
	}
	return h, nil
}

// CheckPassword returns nil if pw matches hash, else ErrBadPassword
// (also for an empty hash: a user without a password cannot log in with
// one). It costs as much as HashPassword.
func CheckPassword(hash []byte, pw string) error {
	if len(hash) == 0 {
		return fmt.Errorf("%w: user has no password", ErrBadPassword)
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return ErrBadPassword
	}
	return fmt.Errorf("%w: %v", ErrBadPassword, err)
}
