package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testNow = time.Unix(1_800_000_000, 0)

const testTTL = 10 * time.Minute

func TestTokenValid(t *testing.T) {
	s := fixture(t)
	tok, exp, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(testNow.Add(testTTL)) {
		t.Fatalf("exp = %v", exp)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || strings.Count(tok, ".") != 2 {
		t.Fatalf("token shape: %q", tok)
	}
	for _, at := range []time.Time{testNow, testNow.Add(testTTL - time.Second), testNow.Add(-time.Hour)} {
		u, err := s.VerifyToken(tok, at)
		if err != nil || u != "alice" {
			t.Fatalf("VerifyToken at %v = %q, %v", at, u, err)
		}
	}
	// The payload is the documented JSON.
	p, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"u":"alice","g":` + itoa(s.Users["alice"].Generation) + `,"e":1800000600,"i":1800000000}`
	if string(p) != want {
		t.Fatalf("payload %s, want %s", p, want)
	}
	// A user without a password gets tokens too (after a certificate
	// login, say); sub-second TTLs round down.
	if _, exp, err := s.IssueToken("dave", testNow.Add(500*time.Millisecond), 1500*time.Millisecond); err != nil || !exp.Equal(testNow.Add(time.Second)) {
		t.Fatalf("dave: %v %v", exp, err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestIssueTokenErrors(t *testing.T) {
	s := fixture(t)
	if _, _, err := s.IssueToken("nobody", testNow, testTTL); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	if _, _, err := s.IssueToken("alice", testNow, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero ttl: %v", err)
	}
	if _, _, err := New().IssueToken("alice", testNow, testTTL); !errors.Is(err, ErrInvalid) {
		t.Errorf("disabled: %v", err)
	}
}

func TestTokenInvalid(t *testing.T) {
	s := fixture(t)
	tok, _, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	payload, mac := parts[1], parts[2]
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	// signed re-signs an arbitrary payload with the state's key, to reach
	// the checks after the MAC.
	signed := func(p string) string {
		enc := TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(p))
		return enc + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(s.TokenKey, enc))
	}
	flip := func(str string, i int) string {
		b := []byte(str)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tampered := strings.Replace(string(raw), `"alice"`, `"bob"`, 1)

	other := fixture(t)
	other.TokenKey = testKey(8)
	otherTok, _, err := other.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		tok  string
		at   time.Time
		want error
	}{
		{"empty", "", testNow, ErrTokenVersion},
		{"garbage", "hello", testNow, ErrTokenVersion},
		{"version 2", "cairn2." + payload + "." + mac, testNow, ErrTokenVersion},
		{"no prefix dot", "cairn1" + payload + "." + mac, testNow, ErrTokenVersion},
		{"bearer prefix left on", "Bearer " + tok, testNow, ErrTokenVersion},
		{"no mac", TokenPrefix + payload, testNow, ErrTokenMalformed},
		{"empty mac", TokenPrefix + payload + ".", testNow, ErrTokenMalformed},
		{"empty payload", TokenPrefix + "." + mac, testNow, ErrTokenMalformed},
		{"prefix only", TokenPrefix, testNow, ErrTokenMalformed},
		{"too long", TokenPrefix + strings.Repeat("A", MaxTokenSize) + "." + mac, testNow, ErrTokenMalformed},
		{"three parts", TokenPrefix + payload + ".x." + mac, testNow, ErrTokenEncoding},
		{"bad base64 payload", TokenPrefix + payload + "!." + mac, testNow, ErrTokenEncoding},
		{"padded payload", TokenPrefix + payload + "==." + mac, testNow, ErrTokenEncoding},
		{"std base64 mac", TokenPrefix + payload + "." + base64.StdEncoding.EncodeToString(make([]byte, 32)), testNow, ErrTokenEncoding},
		{"bad base64 mac", TokenPrefix + payload + "." + mac + "*", testNow, ErrTokenEncoding},
		{"CR after mac", tok + "\r", testNow, ErrTokenEncoding},
		{"LF in payload", TokenPrefix + payload[:4] + "\n" + payload[4:] + "." + mac, testNow, ErrTokenEncoding},
		{"space in mac", TokenPrefix + payload + ". " + mac, testNow, ErrTokenEncoding},
		{"tampered payload", TokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(tampered)) + "." + mac, testNow, ErrTokenMAC},
		{"tampered payload char", TokenPrefix + flip(payload, 3) + "." + mac, testNow, ErrTokenMAC},
		{"tampered mac", TokenPrefix + payload + "." + flip(mac, 0), testNow, ErrTokenMAC},
		{"short mac", TokenPrefix + payload + "." + mac[:20], testNow, ErrTokenMAC},
		{"other key", otherTok, testNow, ErrTokenMAC},
		{"signed non-json", signed("not json"), testNow, ErrTokenPayload},
		{"signed unknown field", signed(`{"u":"alice","g":1,"e":1900000000,"i":1,"admin":true}`), testNow, ErrTokenPayload},
		{"signed trailing", signed(`{"u":"alice","g":1,"e":1900000000,"i":1}{}`), testNow, ErrTokenPayload},
		{"signed wrong type", signed(`{"u":1}`), testNow, ErrTokenPayload},
		{"expired at expiry", tok, testNow.Add(testTTL), ErrTokenExpired},
		{"expired later", tok, testNow.Add(time.Hour), ErrTokenExpired},
		{"signed unknown user", signed(`{"u":"mallory","g":1,"e":1900000000,"i":1}`), testNow, ErrUnknownUser},
		{"signed wrong generation", signed(`{"u":"alice","g":1,"e":1900000000,"i":1}`), testNow, ErrTokenRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := s.VerifyToken(tt.tok, tt.at)
			if u != "" {
				t.Errorf("user %q returned with error", u)
			}
			wantErr(t, err, tt.want)
			if !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%v is not ErrUnauthenticated", err)
			}
			if errors.Is(tt.want, ErrInvalidToken) != errors.Is(err, ErrInvalidToken) {
				t.Errorf("%v: ErrInvalidToken mismatch", err)
			}
		})
	}
}

func TestTokenRevocation(t *testing.T) {
	s := fixture(t)
	tok, _, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	bobTok, _, err := s.IssueToken("bob", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(s *State, tok string, want error) {
		t.Helper()
		_, err := s.VerifyToken(tok, testNow)
		wantErr(t, err, want)
	}
	// Role and permission changes, and other users' changes, do not
	// touch tokens.
	s2 := mustApply(t, s,
		Change{Kind: RevokeRole, User: "alice", Role: "app"},
		Change{Kind: GrantRole, User: "alice", Role: "ops"},
		Change{Kind: DeleteRole, Role: "reader"},
		Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "z", Access: Read}},
		Change{Kind: SetPassword, User: "bob", PasswordHash: testHash(t)},
		Change{Kind: AddUser, User: "eve"})
	verify(s2, tok, nil)
	verify(s2, bobTok, ErrTokenRevoked)
	// Password change: revoked; a new token works.
	s3 := mustApply(t, s, Change{Kind: SetPassword, User: "alice", PasswordHash: testHash(t)})
	verify(s3, tok, ErrTokenRevoked)
	verify(s, tok, nil) // the old snapshot still says valid
	newTok, _, err := s3.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	verify(s3, newTok, nil)
	// Deleted user: unknown; re-created under the same name: revoked.
	s4 := mustApply(t, s, Change{Kind: DeleteUser, User: "alice"})
	verify(s4, tok, ErrUnknownUser)
	s5 := mustApply(t, s4, Change{Kind: AddUser, User: "alice", PasswordHash: testHash(t)})
	verify(s5, tok, ErrTokenRevoked)
	// Disable: no token is accepted; re-enable with a new key: the old
	// token stays dead.
	s6 := mustApply(t, s, Change{Kind: Disable})
	verify(s6, tok, ErrInvalidToken)
	s7 := mustApply(t, s6, Change{Kind: Enable, TokenKey: testKey(42)})
	verify(s7, tok, ErrTokenMAC)
	// A state with a key but disabled (built by hand) accepts none.
	s8 := s.Clone()
	s8.Enabled = false
	verify(s8, tok, ErrInvalidToken)
}

func TestTokenSurvivesEncode(t *testing.T) {
	s := fixture(t)
	tok, _, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := d.VerifyToken(tok, testNow); err != nil || u != "alice" {
		t.Fatalf("after Decode: %q %v", u, err)
	}
}

// FuzzVerifyToken checks that VerifyToken never panics and accepts a
// token only if it is exactly the token IssueToken's signing makes for
// the claims it carries under the state's key: no other spelling, no
// other key.
func FuzzVerifyToken(f *testing.F) {
	s := fixture(f)
	for _, u := range []string{"alice", "bob", "root", "dave"} {
		tok, _, err := s.IssueToken(u, testNow, testTTL)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "A")
		f.Add(strings.Replace(tok, "cairn1.", "cairn2.", 1))
	}
	f.Add("")
	f.Add("cairn1.")
	f.Add("cairn1..")
	f.Add("cairn1.e30.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := s.VerifyToken(tok, testNow)
		if err != nil {
			if u != "" {
				t.Fatalf("user %q with error %v", u, err)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("error %v is not ErrUnauthenticated", err)
			}
			return
		}
		c, err := parseToken(s.TokenKey, tok)
		if err != nil {
			t.Fatalf("VerifyToken accepted, parseToken: %v", err)
		}
		again, err := signToken(s.TokenKey, c)
		if err != nil {
			t.Fatal(err)
		}
		if again != tok {
			t.Fatalf("accepted %q, but the key signs those claims as %q", tok, again)
		}
		if c.User != u || s.Users[u].Generation != c.Generation || testNow.Unix() >= c.Expiry {
			t.Fatalf("accepted %q for %q: claims %+v", tok, u, c)
		}
	})
}

func BenchmarkVerifyToken(b *testing.B) {
	s := fixture(b)
	tok, _, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerifyToken(tok, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllowed(b *testing.B) {
	s := fixture(b)
	need := Need{Access: ReadWrite, Key: "app/some/key"}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Allowed("alice", need); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseClaims(t *testing.T) {
	for _, c := range []claims{
		{User: "a", Generation: 0, Expiry: 0, Issued: 0},
		{User: "alice@example.com", Generation: 123456789, Expiry: 1800000600, Issued: 1800000000},
		{User: "x-y_z.0", Generation: 1, Expiry: -5, Issued: -10},
		{User: strings.Repeat("n", MaxNameSize), Generation: 999_999_999_999_999_999, Expiry: 1, Issued: 1},
	} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseClaims(b)
		if !ok || got != c {
			t.Errorf("parseClaims(%s) = %+v, %v", b, got, ok)
		}
	}
	for _, in := range []string{
		``, `{}`, `{"u":"a","g":1,"e":2,"i":3} `, ` {"u":"a","g":1,"e":2,"i":3}`,
		`{"u":"a","g":01,"e":2,"i":3}`, `{"u":"a","g":-1,"e":2,"i":3}`, `{"u":"a","g":1,"e":-0,"i":3}`,
		`{"u":"a","g":1,"e":2,"i":3,"x":1}`, `{"u":"a","e":2,"g":1,"i":3}`, `{"u":"a b","g":1,"e":2,"i":3}`,
		`{"u":"","g":1,"e":2,"i":3}`, `{"u":"a\u0062","g":1,"e":2,"i":3}`, `{"u":"a","g":1.0,"e":2,"i":3}`,
		`{"u":"a","g":1e3,"e":2,"i":3}`, `{"u":"a","g":1234567890123456789,"e":2,"i":3}`, `{"u":"a","g":1,"e":2,"i":-}`,
		`{"u":"a","g":1,"e":2,"i":3`, `{"u":"a`, `{"u" : "a","g":1,"e":2,"i":3}`,
	} {
		if c, ok := parseClaims([]byte(in)); ok {
			t.Errorf("parseClaims(%s) accepted: %+v", in, c)
		}
	}
}
