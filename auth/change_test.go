package auth

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "A", "0", "alice", "a.b_c@d-e", "9lives", strings.Repeat("x", MaxNameSize)}
	bad := []string{"", ".a", "_a", "@a", "-a", "a b", "a/b", "ä", "a\x00", strings.Repeat("x", MaxNameSize+1), "a:b"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	h := testHash(t)
	s := fixture(t)
	disabled := mustApply(t, New(), Change{Kind: AddUser, User: "u"}, Change{Kind: AddRole, Role: "r"})
	tests := []struct {
		name string
		s    *State
		c    Change
		want error
	}{
		{"unknown kind", s, Change{Kind: "frobnicate"}, ErrInvalid},
		{"empty kind", s, Change{}, ErrInvalid},

		{"add user exists", s, Change{Kind: AddUser, User: "alice"}, ErrExists},
		{"add user bad name", s, Change{Kind: AddUser, User: "a b"}, ErrInvalid},
		{"add user empty name", s, Change{Kind: AddUser}, ErrInvalid},
		{"add user long name", s, Change{Kind: AddUser, User: strings.Repeat("a", 129)}, ErrInvalid},
		{"add user bad hash", s, Change{Kind: AddUser, User: "x", PasswordHash: []byte("plaintext")}, ErrInvalid},

		{"delete user unknown", s, Change{Kind: DeleteUser, User: "nobody"}, ErrNotFound},
		{"delete last root while enabled", s, Change{Kind: DeleteUser, User: "root"}, ErrNoRoot},

		{"set password unknown", s, Change{Kind: SetPassword, User: "nobody", PasswordHash: h}, ErrNotFound},
		{"set password empty", s, Change{Kind: SetPassword, User: "alice"}, ErrInvalid},
		{"set password not bcrypt", s, Change{Kind: SetPassword, User: "alice", PasswordHash: []byte("$2a$10$short")}, ErrInvalid},

		{"grant unknown role", s, Change{Kind: GrantRole, User: "alice", Role: "nope"}, ErrNotFound},
		{"grant to unknown user", s, Change{Kind: GrantRole, User: "nobody", Role: "app"}, ErrNotFound},
		{"grant bad role name", s, Change{Kind: GrantRole, User: "alice", Role: ""}, ErrInvalid},

		{"revoke not held", s, Change{Kind: RevokeRole, User: "alice", Role: "ops"}, ErrNotFound},
		{"revoke unknown user", s, Change{Kind: RevokeRole, User: "nobody", Role: "ops"}, ErrNotFound},
		{"revoke last root while enabled", s, Change{Kind: RevokeRole, User: "root", Role: RootRole}, ErrNoRoot},

		{"add role exists", s, Change{Kind: AddRole, Role: "app"}, ErrExists},
		{"add role root", s, Change{Kind: AddRole, Role: RootRole}, ErrExists},
		{"add role bad name", s, Change{Kind: AddRole, Role: "r/1"}, ErrInvalid},

		{"delete role root", s, Change{Kind: DeleteRole, Role: RootRole}, ErrInvalid},
		{"delete role unknown", s, Change{Kind: DeleteRole, Role: "nope"}, ErrNotFound},

		{"grant perm root", s, Change{Kind: GrantPermission, Role: RootRole, Permission: Permission{Key: "a", Access: Read}}, ErrInvalid},
		{"grant perm unknown role", s, Change{Kind: GrantPermission, Role: "nope", Permission: Permission{Key: "a", Access: Read}}, ErrNotFound},
		{"grant perm no access", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "a"}}, ErrInvalid},
		{"grant perm bad access", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "a", Access: 4}}, ErrInvalid},
		{"grant perm empty key", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Access: Read}}, ErrInvalid},
		{"grant perm long key", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: strings.Repeat("k", MaxKeySize+1), Access: Read}}, ErrInvalid},
		{"grant perm NUL key", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "a\x00", Access: Read}}, ErrInvalid},
		{"grant perm bad utf8", s, Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "\xff", Prefix: true, Access: Read}}, ErrInvalid},

		{"revoke perm root", s, Change{Kind: RevokePermission, Role: RootRole, Permission: Permission{Key: "", Prefix: true}}, ErrInvalid},
		{"revoke perm unknown role", s, Change{Kind: RevokePermission, Role: "nope", Permission: Permission{Key: "a"}}, ErrNotFound},
		{"revoke perm absent", s, Change{Kind: RevokePermission, Role: "app", Permission: Permission{Key: "zzz"}}, ErrNotFound},
		{"revoke perm prefix vs key", s, Change{Kind: RevokePermission, Role: "app", Permission: Permission{Key: "app/"}}, ErrNotFound},

		{"enable no key", disabled, Change{Kind: Enable}, ErrInvalid},
		{"enable short key", disabled, Change{Kind: Enable, TokenKey: make([]byte, 16)}, ErrInvalid},
		{"enable no root", disabled, Change{Kind: Enable, TokenKey: testKey(1)}, ErrNoRoot},
		{"enable root role but no user", mustApply(t, New(), Change{Kind: AddRole, Role: "admin", Admin: true}), Change{Kind: Enable, TokenKey: testKey(1)}, ErrNoRoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := Encode(tt.s)
			n, err := tt.s.Apply(tt.c)
			wantErr(t, err, tt.want)
			if n != nil {
				t.Fatalf("Apply returned a state with error %v", err)
			}
			after, _ := Encode(tt.s)
			if string(before) != string(after) {
				t.Fatal("failed Apply changed the old state")
			}
		})
	}
}

func TestApplyEachKind(t *testing.T) {
	h := testHash(t)
	h2, err := HashPassword("other")
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	rev := func(want uint64) {
		t.Helper()
		if s.Revision != want {
			t.Fatalf("Revision = %d, want %d", s.Revision, want)
		}
	}
	s = mustApply(t, s, Change{Kind: AddUser, User: "root", PasswordHash: h})
	rev(1)
	if u := s.Users["root"]; u.Generation != 1 || !u.HasPassword() || len(u.Roles) != 0 {
		t.Fatalf("root = %+v", u)
	}
	s = mustApply(t, s, Change{Kind: AddUser, User: "cert-only"})
	if s.Users["cert-only"].HasPassword() {
		t.Fatal("cert-only user has a password")
	}
	s = mustApply(t, s, Change{Kind: GrantRole, User: "root", Role: RootRole})
	s = mustApply(t, s, Change{Kind: AddRole, Role: "b"}, Change{Kind: AddRole, Role: "a", Admin: true})
	if !s.Roles["a"].Admin || s.Roles["b"].Admin {
		t.Fatal("admin flag not kept")
	}
	// Roles stay sorted and unique; granting twice is a no-op.
	s = mustApply(t, s,
		Change{Kind: GrantRole, User: "cert-only", Role: "b"},
		Change{Kind: GrantRole, User: "cert-only", Role: "a"},
		Change{Kind: GrantRole, User: "cert-only", Role: "b"})
	if got := s.Users["cert-only"].Roles; !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("roles = %v", got)
	}
	// Permissions: granting the same target replaces its access.
	s = mustApply(t, s,
		Change{Kind: GrantPermission, Role: "b", Permission: Permission{Key: "x", Prefix: true, Access: Read}},
		Change{Kind: GrantPermission, Role: "b", Permission: Permission{Key: "x", Access: Write}},
		Change{Kind: GrantPermission, Role: "b", Permission: Permission{Key: "x", Prefix: true, Access: ReadWrite}},
		Change{Kind: GrantPermission, Role: "b", Permission: Permission{Key: "", Prefix: true, Access: Read}})
	want := []Permission{{Key: "", Prefix: true, Access: Read}, {Key: "x", Access: Write}, {Key: "x", Prefix: true, Access: ReadWrite}}
	if got := s.Roles["b"].Permissions; !reflect.DeepEqual(got, want) {
		t.Fatalf("permissions = %+v, want %+v", got, want)
	}
	s = mustApply(t, s, Change{Kind: RevokePermission, Role: "b", Permission: Permission{Key: "x", Access: Read}})
	want = []Permission{{Key: "", Prefix: true, Access: Read}, {Key: "x", Prefix: true, Access: ReadWrite}}
	if got := s.Roles["b"].Permissions; !reflect.DeepEqual(got, want) {
		t.Fatalf("after revoke: permissions = %+v, want %+v", got, want)
	}
	// Enable, idempotently (the key stays).
	s = mustApply(t, s, Change{Kind: Enable, TokenKey: testKey(1)})
	if !s.Enabled || string(s.TokenKey) != string(testKey(1)) {
		t.Fatal("not enabled with the key")
	}
	s = mustApply(t, s, Change{Kind: Enable, TokenKey: testKey(2)})
	if string(s.TokenKey) != string(testKey(1)) {
		t.Fatal("re-enable replaced the key")
	}
	// SetPassword moves the generation to the change's revision.
	s = mustApply(t, s, Change{Kind: SetPassword, User: "root", PasswordHash: h2})
	if u := s.Users["root"]; u.Generation != s.Revision || string(u.PasswordHash) != string(h2) {
		t.Fatalf("after SetPassword root = %+v at %d", u, s.Revision)
	}
	// RevokeRole.
	s = mustApply(t, s, Change{Kind: RevokeRole, User: "cert-only", Role: "b"})
	if got := s.Users["cert-only"].Roles; !slices.Equal(got, []string{"a"}) {
		t.Fatalf("roles = %v", got)
	}
	// DeleteRole removes it from users.
	s = mustApply(t, s, Change{Kind: DeleteRole, Role: "a"})
	if _, ok := s.Roles["a"]; ok || len(s.Users["cert-only"].Roles) != 0 {
		t.Fatalf("role a still there: %v %v", s.Roles, s.Users["cert-only"])
	}
	// A second root holder (certificate only) allows revoking root from
	// the first, and then deleting it.
	s = mustApply(t, s,
		Change{Kind: GrantRole, User: "cert-only", Role: RootRole},
		Change{Kind: RevokeRole, User: "root", Role: RootRole},
		Change{Kind: DeleteUser, User: "root"})
	if _, ok := s.Users["root"]; ok {
		t.Fatal("root not deleted")
	}
	// Disable drops the key; then the last root may go.
	s = mustApply(t, s, Change{Kind: Disable})
	if s.Enabled || s.TokenKey != nil {
		t.Fatal("disable kept auth on or the key")
	}
	s = mustApply(t, s, Change{Kind: Disable}, Change{Kind: DeleteUser, User: "cert-only"})
	if len(s.Users) != 0 {
		t.Fatal(s.Users)
	}
	rev(uint64(24))
}

func TestEnableWithCertOnlyRoot(t *testing.T) {
	s := mustApply(t, New(), Change{Kind: AddUser, User: "admin"}, Change{Kind: GrantRole, User: "admin", Role: RootRole})
	if s.HasRootWithPassword() {
		t.Fatal("HasRootWithPassword with a certificate-only root")
	}
	s = mustApply(t, s, Change{Kind: Enable, TokenKey: testKey(3)})
	if !s.Enabled {
		t.Fatal("not enabled")
	}
	s = mustApply(t, s, Change{Kind: SetPassword, User: "admin", PasswordHash: testHash(t)})
	if !s.HasRootWithPassword() {
		t.Fatal("HasRootWithPassword false")
	}
}

func TestApplyDoesNotAliasChange(t *testing.T) {
	h := append([]byte(nil), testHash(t)...)
	key := testKey(5)
	s := mustApply(t, New(),
		Change{Kind: AddUser, User: "root", PasswordHash: h},
		Change{Kind: GrantRole, User: "root", Role: RootRole},
		Change{Kind: Enable, TokenKey: key})
	h[10]++
	key[0]++
	if CheckPassword(s.Users["root"].PasswordHash, testPassword) != nil {
		t.Fatal("state shares the change's hash bytes")
	}
	if s.TokenKey[0] != 5 {
		t.Fatal("state shares the change's key bytes")
	}
}

// TestApplyImmutable applies every kind of change to a shared state while
// other goroutines read it; run with -race. The old state must encode to
// the same bytes afterwards.
func TestApplyImmutable(t *testing.T) {
	s := fixture(t)
	before, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.IssueToken("alice", testNow, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	h2 := testHash(t)
	changes := []Change{
		{Kind: AddUser, User: "eve"},
		{Kind: DeleteUser, User: "alice"},
		{Kind: SetPassword, User: "alice", PasswordHash: h2},
		{Kind: GrantRole, User: "alice", Role: "reader"},
		{Kind: GrantRole, User: "alice", Role: "ops"},
		{Kind: RevokeRole, User: "alice", Role: "app"},
		{Kind: RevokeRole, User: "bob", Role: "ops"},
		{Kind: AddRole, Role: "new"},
		{Kind: DeleteRole, Role: "app"},
		{Kind: DeleteRole, Role: "r"},
		{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "app/", Prefix: true, Access: Read}},
		{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "b", Access: Read}},
		{Kind: RevokePermission, Role: "app", Permission: Permission{Key: "cfg/x"}},
		{Kind: Enable, TokenKey: testKey(9)},
		{Kind: Disable},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.Allowed("alice", Need{Access: ReadWrite, Key: "app/1"}); err != nil {
					t.Error(err)
					return
				}
				if !s.IsAdmin("bob") {
					t.Error("bob lost admin in the old state")
					return
				}
				if u, err := s.VerifyToken(tok, testNow); err != nil || u != "alice" {
					t.Error(u, err)
					return
				}
				if _, err := Encode(s); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 20 {
		for _, c := range changes {
			n, err := s.Apply(c)
			if err != nil {
				t.Errorf("Apply(%v): %v", c, err)
				continue
			}
			if n == s || n.Revision != s.Revision+1 {
				t.Errorf("Apply(%v): new state %p rev %d from %p rev %d", c, n, n.Revision, s, s.Revision)
			}
		}
	}
	close(stop)
	wg.Wait()
	after, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatalf("old state changed:\n%s\n%s", before, after)
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := fixture(t)
	before, _ := Encode(s)
	c := s.Clone()
	u := c.Users["alice"]
	u.Roles[0] = "zzz"
	u.PasswordHash[0] = 'x'
	c.Roles["app"].Permissions[0].Access = Write
	c.TokenKey[0]++
	c.Users["new"] = User{Name: "new"}
	after, _ := Encode(s)
	if string(before) != string(after) {
		t.Fatal("Clone shares memory with the original")
	}
}

// TestApplyHandBuiltState applies changes to a state built by hand with
// unsorted slices (as other packages' tests may): Clone normalises it.
func TestApplyHandBuiltState(t *testing.T) {
	s := &State{
		Users: map[string]User{"u": {Name: "u", Roles: []string{"z", "a", "z"}}},
		Roles: map[string]Role{
			"a": {Name: "a", Permissions: []Permission{{Key: "y", Access: Read}, {Key: "b", Prefix: true, Access: Write}}},
			"z": {Name: "z"},
		},
	}
	if !s.Users["u"].HasRole("z") || !s.Users["u"].HasRole("a") {
		t.Fatal("HasRole on unsorted roles")
	}
	n := mustApply(t, s,
		Change{Kind: RevokeRole, User: "u", Role: "z"},
		Change{Kind: RevokePermission, Role: "a", Permission: Permission{Key: "b", Prefix: true}},
		Change{Kind: GrantPermission, Role: "a", Permission: Permission{Key: "y", Access: Write}})
	if got := n.Users["u"].Roles; !slices.Equal(got, []string{"a"}) {
		t.Fatalf("roles = %v", got)
	}
	if got := n.Roles["a"].Permissions; !reflect.DeepEqual(got, []Permission{{Key: "y", Access: Write}}) {
		t.Fatalf("permissions = %v", got)
	}
	if !slices.Equal(s.Users["u"].Roles, []string{"z", "a", "z"}) {
		t.Fatal("hand-built state modified")
	}
}
