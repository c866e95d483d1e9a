package auth

import (
	"bytes"
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
	if err := ValidateName(user); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issuing token: %w", err)
	}
	c := claims{User: user, Generation: u.Generation, Issued: now.Unix(), Expiry: now.Unix() + int64(ttl/time.Second)}
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
	// encoding/base64 skips '\r' and '\n' even in strict mode: check the
	// alphabet first so that a token has exactly one spelling.
	if !isBase64URL(payload64) || !isBase64URL(mac64) {
		return c, ErrTokenEncoding
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
	c, ok := parseClaims(payload)
	if !ok {
		return claims{}, ErrTokenPayload
	}
	return c, nil
}

// isBase64URL reports whether s holds only the base64url alphabet.
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseClaims parses a token payload in exactly the form signToken
// writes, {"u":"NAME","g":N,"e":N,"i":N}, with NAME a valid user name
// (ValidateName: no JSON escapes needed) and N decimal integers as
// encoding/json writes them. Anything else is refused: the MAC already
// proved the payload is ours, and accepting one spelling only keeps
// tokens unique. It is also several times faster than encoding/json on
// the hot path.
func parseClaims(p []byte) (claims, bool) {
	var c claims
	rest, ok := cutPrefix(p, `{"u":"`)
	if !ok {
		return c, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return c, false
	}
	c.User, rest = string(rest[:end]), rest[end+1:]
	if ValidateName(c.User) != nil {
		return c, false
	}
	if rest, ok = cutPrefix(rest, `,"g":`); !ok {
		return c, false
	}
	var g, e, i int64
	if g, rest, ok = parseInt(rest); !ok || g < 0 {
		return c, false
	}
	c.Generation = uint64(g)
	if rest, ok = cutPrefix(rest, `,"e":`); !ok {
		return c, false
	}
	if e, rest, ok = parseInt(rest); !ok {
		return c, false
	}
	if rest, ok = cutPrefix(rest, `,"i":`); !ok {
		return c, false
	}
	if i, rest, ok = parseInt(rest); !ok {
		return c, false
	}
	if string(rest) != "}" {
		return c, false
	}
	c.Expiry, c.Issued = e, i
	return c, true
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return b, false
	}
	return b[len(prefix):], true
}

// parseInt reads a canonical decimal int64 (optional '-', no leading
// zeros, no "-0") from the start of b, at most 18 digits (so it cannot
// overflow; generations and unix times are far smaller).
func parseInt(b []byte) (int64, []byte, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == 0 || n > 18 || n > 1 && b[0] == '0' || neg && n == 1 && b[0] == '0' {
		return 0, b, false
	}
	var v int64
	for _, d := range b[:n] {
		v = v*10 + int64(d-'0')
	}
	if neg {
		v = -v
	}
	return v, b[n:], true
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
