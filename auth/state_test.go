package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	s := fixture(t)
	rd := func(k string) Need { return Need{Access: Read, Key: k} }
	wr := func(k string) Need { return Need{Access: Write, Key: k} }
	rw := func(k string) Need { return Need{Access: ReadWrite, Key: k} }
	rdp := func(p string) Need { return Need{Access: Read, Key: p, Prefix: true} }
	wrp := func(p string) Need { return Need{Access: Write, Key: p, Prefix: true} }
	admin := Need{Admin: true}
	tests := []struct {
		user string
		need Need
		ok   bool
	}{
		// root: everything.
		{"root", rw("any"), true},
		{"root", wrp(""), true},
		{"root", admin, true},
		// prefix grant covers keys under it, and narrower prefixes.
		{"alice", rd("app/1"), true},
		{"alice", wr("app/1"), true},
		{"alice", rw("app/"), true},
		{"alice", rdp("app/"), true},
		{"alice", rdp("app/sub/"), true},
		{"alice", wrp("app/x"), true},
		// whole-prefix rule: a broader prefix is refused.
		{"alice", rdp("app"), false},
		{"alice", rdp("ap"), false},
		{"alice", rdp(""), false},
		{"alice", wrp(""), false},
		{"alice", rd("ap"), false},
		{"alice", rd("apps/1"), false},
		// key grant covers only the key, never a prefix.
		{"alice", rd("cfg/x"), true},
		{"alice", wr("cfg/x"), false},
		{"alice", rd("cfg/xy"), false},
		{"alice", rd("cfg/"), false},
		{"alice", rdp("cfg/x"), false},
		{"alice", admin, false},
		// prefix "" grant covers everything, including prefix "".
		{"bob", rd("a"), true},
		{"bob", rdp(""), true},
		{"bob", wr("a"), false},
		{"bob", wrp(""), false},
		{"bob", admin, true},
		// read and write halves from different grants.
		{"carol", rw("k"), true},
		{"carol", rw("k2"), false},
		{"carol", rd("k2"), true},
		{"carol", wrp("k"), false},
		// no roles, unknown, anonymous.
		{"dave", rd("a"), false},
		{"dave", admin, false},
		{"nobody", rd("a"), false},
		{"", rd("a"), false},
		{"", admin, false},
		// invalid needs.
		{"root", Need{Key: "a"}, false},
		{"root", Need{Access: 4, Key: "a"}, false},
	}
	for _, tt := range tests {
		err := s.Allowed(tt.user, tt.need)
		if tt.ok {
			if err != nil {
				t.Errorf("Allowed(%q, %v) = %v, want nil", tt.user, tt.need, err)
			}
		} else if !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("Allowed(%q, %v) = %v, want ErrPermissionDenied", tt.user, tt.need, err)
		}
	}
}

func TestAllowedDisabled(t *testing.T) {
	s := mustApply(t, fixture(t), Change{Kind: Disable})
	for _, u := range []string{"", "nobody", "dave", "alice"} {
		if err := s.Allowed(u, Need{Admin: true}); err != nil {
			t.Errorf("disabled: Allowed(%q, admin) = %v", u, err)
		}
		if err := s.AllowedAll(u, []Need{{Access: Write, Key: "", Prefix: true}}); err != nil {
			t.Errorf("disabled: AllowedAll(%q) = %v", u, err)
		}
	}
	if err := New().Allowed("", Need{Admin: true}); err != nil {
		t.Errorf("New(): %v", err)
	}
	if err := (&State{}).Allowed("", Need{Admin: true}); err != nil {
		t.Errorf("zero State: %v", err)
	}
}

func TestAllowedAll(t *testing.T) {
	s := fixture(t)
	ok := []Need{{Access: Read, Key: "app/a"}, {Access: Write, Key: "app/b"}, {Access: Read, Key: "cfg/x"}}
	if err := s.AllowedAll("alice", ok); err != nil {
		t.Fatal(err)
	}
	if err := s.AllowedAll("alice", nil); err != nil {
		t.Fatal(err)
	}
	bad := append(ok, Need{Access: Write, Key: "cfg/x"})
	err := s.AllowedAll("alice", bad)
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), `write on key "cfg/x"`) {
		t.Fatalf("AllowedAll = %v", err)
	}
}

func TestIsAdmin(t *testing.T) {
	s := fixture(t)
	for user, want := range map[string]bool{"root": true, "bob": true, "alice": false, "dave": false, "": false, "x": false} {
		if got := s.IsAdmin(user); got != want {
			t.Errorf("IsAdmin(%q) = %v, want %v", user, got, want)
		}
	}
	// Deleting the admin role takes admin away.
	s = mustApply(t, s, Change{Kind: DeleteRole, Role: "ops"})
	if s.IsAdmin("bob") {
		t.Error("bob still admin after ops deleted")
	}
}

func TestZeroStateRoot(t *testing.T) {
	// A zero State (no maps) knows the root role too.
	var z State
	if _, ok := z.Role(RootRole); !ok {
		t.Fatal("zero state has no root role")
	}
	s := mustApply(t, &z,
		Change{Kind: AddUser, User: "root"},
		Change{Kind: GrantRole, User: "root", Role: RootRole},
		Change{Kind: Enable, TokenKey: testKey(1)})
	if err := s.Allowed("root", Need{Access: ReadWrite, Key: "", Prefix: true}); err != nil {
		t.Fatal(err)
	}
	if got := s.RoleNames(); len(got) != 1 || got[0] != RootRole {
		t.Fatalf("RoleNames = %v", got)
	}
}

func TestAccessStrings(t *testing.T) {
	for _, a := range []Access{Read, Write, ReadWrite} {
		b, err := ParseAccess(a.String())
		if err != nil || b != a {
			t.Errorf("ParseAccess(%q) = %v, %v", a.String(), b, err)
		}
	}
	if _, err := ParseAccess("all"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseAccess(all) = %v", err)
	}
	if Access(9).String() != "access(9)" {
		t.Error(Access(9).String())
	}
}
