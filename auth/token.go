package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TokenPrefix starts every token; it names the token format version.
const TokenPrefix = "cairn1."

// MaxTokenSize is the longest token VerifyToken reads; longer input is
// ErrTokenMalformed without further work.
const MaxTokenSize = 1024

// b64 is the token's encoding: base64url without padding, strict (the
// unused bits of the last character must be zero), so that every byte
// string has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// claims is a token's payload. Field order is the encoding's order.
type claims struct {
	User       string `json:"u"`
	Generation uint64 `json:"g"`
	Expiry     int64  `json:"e"`
	Issued     int64  `json:"i"`
}

// IssueToken returns a bearer token for user, valid from now for ttl
// (rounded down to whole seconds) while the user exists with its current
// generation, and the time it expires.
//
// The token is "cairn1." + base64url(payload) + "." +
// base64url(HMAC-SHA256(TokenKey, "cairn1." + base64url(payload))), with
// payload the JSON {"u":user,"g":generation,"e":expiry,"i":issued} (unix
// seconds). Errors: ErrUnknownUser; ErrInvalid when auth is not enabled
// (no key) or ttl is under one second.
func (s *State) IssueToken(user string, now time.Time, ttl time.Duration) (string, time.Time, error) {
	if !s.Enabled || len(s.TokenKey) != TokenKeySize {
		return "", time.Time{}, fmt.Errorf("%w: auth is not enabled: no token key", ErrInvalid)
	}
	if ttl < time.Second {
		return "", time.Time{}, fmt.Errorf("%w: token ttl %v (at least 1s)", ErrInvalid, ttl)
	}
	u, ok := s.Users[user]
	if !ok {
		return "", time.Time{}, fmt.Errorf("%w: %q", ErrUnknownUser, user)
	}
	c := claims{User: u.Name, Generation: u.Generation, Issued: now.Unix(), Expiry: now.Unix() + int64(ttl/time.Second)}
	tok, err := signToken(s.TokenKey, c)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, time.Unix(c.Expiry, 0), nil
}

// signToken encodes and signs claims with key.
func signToken(key []byte, c claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("auth: encoding token: %w", err)
	}
	var b strings.Builder
	b.Grow(len(TokenPrefix) + b64.EncodedLen(len(payload)) + 1 + b64.EncodedLen(sha256.Size))
	b.WriteString(TokenPrefix)
	b.WriteString(b64.EncodeToString(payload))
	mac := tokenMAC(key, b.String())
	b.WriteByte('.')
	b.WriteString(b64.EncodeToString(mac))
	return b.String(), nil
}

// tokenMAC is HMAC-SHA256(key, signed).
func tokenMAC(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// parseToken checks a token's shape, encoding and MAC under key, and
// returns its claims. It does not look at expiry or users.
func parseToken(key []byte, tok string) (claims, error) {
	var c claims
	if len(tok) > MaxTokenSize {
		return c, fmt.Errorf("%w: %d bytes (limit %d)", ErrTokenMalformed, len(tok), MaxTokenSize)
	}
	if !strings.HasPrefix(tok, TokenPrefix) {
		return c, ErrTokenVersion
	}
	dot := strings.LastIndexByte(tok, '.')
	if dot < len(TokenPrefix) {
		return c, ErrTokenMalformed
	}
	payload64, mac64 := tok[len(TokenPrefix):dot], tok[dot+1:]
	if payload64 == "" || mac64 == "" {
		return c, ErrTokenMalformed
	}
	payload, err := b64.DecodeString(payload64)
	if err != nil {
		return c, fmt.Errorf("%w: payload", ErrTokenEncoding)
	}
	mac, err := b64.DecodeString(mac64)
	if err != nil {
		return c, fmt.Errorf("%w: mac", ErrTokenEncoding)
	}
	if len(key) != TokenKeySize {
		return c, fmt.Errorf("%w: auth is not enabled", ErrInvalidToken)
	}
	if !hmac.Equal(mac, tokenMAC(key, tok[:dot])) {
		return c, ErrTokenMAC
	}
	if err := strictUnmarshal(payload, &c); err != nil {
		return claims{}, fmt.Errorf("%w: %v", ErrTokenPayload, err)
	}
	return c, nil
}

// VerifyToken returns the user a token was issued to, if the token is
// valid at now: issued with this state's TokenKey (the MAC matches), not
// expired, for a user that exists and whose generation still equals the
// token's. Checking is an HMAC and a map lookup; no bcrypt.
//
// Errors, all wrapping ErrUnauthenticated: ErrTokenMalformed,
// ErrTokenVersion, ErrTokenEncoding, ErrTokenMAC, ErrTokenPayload (all
// also ErrInvalidToken), ErrTokenExpired, ErrUnknownUser, and
// ErrTokenRevoked (also ErrInvalidToken) on a generation mismatch. A
// disabled state (no key) accepts no token (ErrInvalidToken).
func (s *State) VerifyToken(tok string, now time.Time) (string, error) {
	var key []byte
	if s.Enabled {
		key = s.TokenKey
	}
	c, err := parseToken(key, tok)
	if err != nil {
		return "", err
	}
	if now.Unix() >= c.Expiry {
		return "", fmt.Errorf("%w: at %s", ErrTokenExpired, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	u, ok := s.Users[c.User]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownUser, c.User)
	}
	if u.Generation != c.Generation {
		return "", fmt.Errorf("%w: user %q: password changed or user re-created since issue", ErrTokenRevoked, c.User)
	}
	return c.User, nil
}
