package auth

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

// testHash is one bcrypt hash shared by the tests (hashing is slow on
// purpose); its password is testPassword.
var (
	testHashOnce sync.Once
	testHashVal  []byte
)

const testPassword = "correct horse"

func testHash(t testing.TB) []byte {
	t.Helper()
	testHashOnce.Do(func() {
		h, err := HashPassword(testPassword)
		if err != nil {
			panic(err)
		}
		testHashVal = h
	})
	return testHashVal
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, TokenKeySize) }

// mustApply applies changes in order and fails the test on any error.
func mustApply(t testing.TB, s *State, cs ...Change) *State {
	t.Helper()
	for _, c := range cs {
		n, err := s.Apply(c)
		if err != nil {
			t.Fatalf("Apply(%v): %v", c, err)
		}
		s = n
	}
	return s
}

// fixture returns an enabled state with:
//   - root (role root, password)
//   - alice: role "app": readwrite prefix "app/", read key "cfg/x"
//   - bob: role "reader": read prefix "" ; role "ops": admin
//   - carol: role "w": write key "k"; role "r": read prefix "k"
//   - dave: no roles, no password
func fixture(t testing.TB) *State {
	t.Helper()
	h := testHash(t)
	return mustApply(t, New(),
		Change{Kind: AddUser, User: "root", PasswordHash: h},
		Change{Kind: GrantRole, User: "root", Role: RootRole},
		Change{Kind: AddRole, Role: "app"},
		Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "app/", Prefix: true, Access: ReadWrite}},
		Change{Kind: GrantPermission, Role: "app", Permission: Permission{Key: "cfg/x", Access: Read}},
		Change{Kind: AddRole, Role: "reader"},
		Change{Kind: GrantPermission, Role: "reader", Permission: Permission{Key: "", Prefix: true, Access: Read}},
		Change{Kind: AddRole, Role: "ops", Admin: true},
		Change{Kind: AddRole, Role: "w"},
		Change{Kind: GrantPermission, Role: "w", Permission: Permission{Key: "k", Access: Write}},
		Change{Kind: AddRole, Role: "r"},
		Change{Kind: GrantPermission, Role: "r", Permission: Permission{Key: "k", Prefix: true, Access: Read}},
		Change{Kind: AddUser, User: "alice", PasswordHash: h},
		Change{Kind: GrantRole, User: "alice", Role: "app"},
		Change{Kind: AddUser, User: "bob", PasswordHash: h},
		Change{Kind: GrantRole, User: "bob", Role: "reader"},
		Change{Kind: GrantRole, User: "bob", Role: "ops"},
		Change{Kind: AddUser, User: "carol", PasswordHash: h},
		Change{Kind: GrantRole, User: "carol", Role: "w"},
		Change{Kind: GrantRole, User: "carol", Role: "r"},
		Change{Kind: AddUser, User: "dave"},
		Change{Kind: Enable, TokenKey: testKey(7)},
	)
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}
