package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for name, s := range map[string]*State{
		"new":      New(),
		"zero":     {},
		"fixture":  fixture(t),
		"disabled": mustApply(t, fixture(t), Change{Kind: Disable}),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(s)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, b)
			}
			b2, err := Encode(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs:\n%s\n%s", b, b2)
			}
			want := s.Clone() // normalises: maps exist, root role present
			if len(want.Users) == 0 {
				want.Users = map[string]User{}
			}
			if !reflect.DeepEqual(normalise(d), normalise(want)) {
				t.Fatalf("Decode(Encode(s)) = %+v, want %+v", d, want)
			}
		})
	}
}

// normalise maps empty slices to nil for DeepEqual.
func normalise(s *State) *State {
	c := s.Clone()
	if len(c.TokenKey) == 0 {
		c.TokenKey = nil
	}
	for n, u := range c.Users {
		if len(u.Roles) == 0 {
			u.Roles = nil
		}
		if len(u.PasswordHash) == 0 {
			u.PasswordHash = nil
		}
		c.Users[n] = u
	}
	for n, r := range c.Roles {
		if len(r.Permissions) == 0 {
			r.Permissions = nil
		}
		c.Roles[n] = r
	}
	return c
}

// TestEncodeDeterministic builds the same state by different routes (map
// insertion orders, unsorted slices) and wants the same bytes.
func TestEncodeDeterministic(t *testing.T) {
	a := fixture(t)
	want, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		b := &State{Enabled: a.Enabled, Revision: a.Revision, TokenKey: a.TokenKey, Users: map[string]User{}, Roles: map[string]Role{}}
		// Insert in a rotating order so map layouts differ.
		names := a.UserNames()
		for j := range names {
			n := names[(i+j)%len(names)]
			u := a.Users[n]
			r := append([]string(nil), u.Roles...)
			for k := range len(r) / 2 {
				r[k], r[len(r)-1-k] = r[len(r)-1-k], r[k]
			}
			u.Roles = r
			b.Users[n] = u
		}
		rn := a.RoleNames()
		for j := range rn {
			n := rn[(i+j)%len(rn)]
			if n == RootRole && i%2 == 0 {
				continue // with or without the root role stored
			}
			r, _ := a.Role(n)
			p := append([]Permission(nil), r.Permissions...)
			for k := range len(p) / 2 {
				p[k], p[len(p)-1-k] = p[len(p)-1-k], p[k]
			}
			r.Permissions = p
			b.Roles[n] = r
		}
		got, err := Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d:\n%s\nwant\n%s", i, got, want)
		}
	}
	// Two members applying the same changes encode alike.
	if b1, b2 := must(Encode(fixture(t))), must(Encode(fixture(t))); !bytes.Equal(b1, b2) {
		t.Fatal("same changes, different bytes")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestEncodeNoRootStored(t *testing.T) {
	b := must(Encode(fixture(t)))
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	for _, r := range j.Roles {
		if r.Name == RootRole {
			t.Fatal("root role stored")
		}
	}
	if j.Version != StateVersion {
		t.Fatal(j.Version)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := string(must(Encode(fixture(t))))
	hash64 := func() string {
		b, _ := json.Marshal(testHash(t))
		return string(b)
	}()
	tests := map[string]string{
		"empty":             ``,
		"not json":          `hello`,
		"array":             `[]`,
		"version 0":         `{"enabled":false,"revision":0,"users":[],"roles":[]}`,
		"version 2":         strings.Replace(good, `{"v":1,`, `{"v":2,`, 1),
		"unknown field":     strings.Replace(good, `{"v":1,`, `{"v":1,"x":1,`, 1),
		"trailing":          good + `{}`,
		"trailing brace":    good + `}`,
		"enabled no key":    `{"v":1,"enabled":true,"revision":1,"users":[],"roles":[]}`,
		"enabled short key": `{"v":1,"enabled":true,"revision":1,"token_key":"AAAA","users":[],"roles":[]}`,
		"key while off":     `{"v":1,"enabled":false,"revision":1,"token_key":"AAAA","users":[],"roles":[]}`,
		"bad user name":     `{"v":1,"enabled":false,"revision":1,"users":[{"name":"a b","roles":[],"generation":1}],"roles":[]}`,
		"dup user":          `{"v":1,"enabled":false,"revision":1,"users":[{"name":"a","roles":[],"generation":1},{"name":"a","roles":[],"generation":1}],"roles":[]}`,
		"bad hash":          `{"v":1,"enabled":false,"revision":1,"users":[{"name":"a","password_hash":"AAAA","roles":[],"generation":1}],"roles":[]}`,
		"unknown role":      `{"v":1,"enabled":false,"revision":1,"users":[{"name":"a","password_hash":` + hash64 + `,"roles":["x"],"generation":1}],"roles":[]}`,
		"dup role of user":  `{"v":1,"enabled":false,"revision":1,"users":[{"name":"a","roles":["root","root"],"generation":1}],"roles":[]}`,
		"root stored":       `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"root","admin":false,"permissions":[]}]}`,
		"dup role":          `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"r","admin":false,"permissions":[]},{"name":"r","admin":false,"permissions":[]}]}`,
		"bad role name":     `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"","admin":false,"permissions":[]}]}`,
		"bad access":        `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"r","admin":false,"permissions":[{"key":"a","prefix":false,"access":7}]}]}`,
		"empty key":         `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"r","admin":false,"permissions":[{"key":"","prefix":false,"access":1}]}]}`,
		"dup permission":    `{"v":1,"enabled":false,"revision":1,"users":[],"roles":[{"name":"r","admin":false,"permissions":[{"key":"a","prefix":true,"access":1},{"key":"a","prefix":true,"access":2}]}]}`,
	}
	for name, in := range tests {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	// A minimal valid one, with a root holder whose hash is real.
	ok := `{"v":1,"enabled":false,"revision":3,"users":[{"name":"a","password_hash":` + hash64 + `,"roles":["root"],"generation":1}],"roles":[]}`
	s, err := Decode([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Users["a"].HasRole(RootRole) || s.Revision != 3 {
		t.Fatalf("%+v", s)
	}
}

func TestChangeRoundTrip(t *testing.T) {
	changes := []Change{
		{Kind: AddUser, User: "a", PasswordHash: testHash(t)},
		{Kind: AddUser, User: "a"},
		{Kind: DeleteUser, User: "a"},
		{Kind: SetPassword, User: "a", PasswordHash: testHash(t)},
		{Kind: GrantRole, User: "a", Role: "r"},
		{Kind: RevokeRole, User: "a", Role: "r"},
		{Kind: AddRole, Role: "r", Admin: true},
		{Kind: DeleteRole, Role: "r"},
		{Kind: GrantPermission, Role: "r", Permission: Permission{Key: "", Prefix: true, Access: ReadWrite}},
		{Kind: RevokePermission, Role: "r", Permission: Permission{Key: "k"}},
		{Kind: Enable, TokenKey: testKey(1)},
		{Kind: Disable},
	}
	for _, c := range changes {
		b, err := EncodeChange(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeChange(b)
		if err != nil {
			t.Fatalf("DecodeChange(%s): %v", b, err)
		}
		if !reflect.DeepEqual(d, c) {
			t.Fatalf("round trip %v: got %+v want %+v", c, d, c)
		}
		if !bytes.Equal(b, must(EncodeChange(d))) {
			t.Fatalf("re-encoding %v differs", c)
		}
		if s := c.String(); strings.Contains(s, string(testHash(t))) || !strings.HasPrefix(s, string(c.Kind)) {
			t.Fatalf("String() = %q", s)
		}
	}
	for name, in := range map[string]string{
		"empty":         ``,
		"no version":    `{"kind":"disable"}`,
		"version 2":     `{"v":2,"kind":"disable"}`,
		"unknown field": `{"v":1,"kind":"disable","force":true}`,
		"trailing":      `{"v":1,"kind":"disable"} x`,
		"bad base64":    `{"v":1,"kind":"enable","token_key":"!!"}`,
	} {
		if _, err := DecodeChange([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: DecodeChange = %v, want ErrInvalid", name, err)
		}
	}
	// An unknown kind decodes (a newer build's change) but Apply refuses it.
	c, err := DecodeChange([]byte(`{"v":1,"kind":"frob"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New().Apply(c); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}
