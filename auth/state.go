package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Access is what a permission allows or a request needs: Read, Write or
// both (ReadWrite). It is a bit set: ReadWrite == Read|Write.
type Access uint8

// Access levels.
const (
	// Read allows get, list, history and watch, and precondition checks.
	Read Access = 1
	// Write allows put, delete and delete-prefix.
	Write Access = 2
	// ReadWrite allows both.
	ReadWrite Access = Read | Write
)

// String returns "read", "write" or "readwrite" (the api wire names), or
// "access(N)" for anything else.
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "readwrite"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParseAccess parses "read", "write" or "readwrite" (the api wire names).
// Anything else is ErrInvalid.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "readwrite":
		return ReadWrite, nil
	}
	return 0, fmt.Errorf("%w: access %q (want read, write or readwrite)", ErrInvalid, s)
}

// valid reports whether a is one of Read, Write, ReadWrite.
func (a Access) valid() bool { return a >= Read && a <= ReadWrite }

// Permission grants Access on one key, or, when Prefix is set, on every
// key that starts with Key (Key "" with Prefix: every key).
type Permission struct {
	Key    string
	Prefix bool
	Access Access
}

// Role is a named set of permissions, and the admin flag for cluster
// operations (log, backups, membership, auth management...). Admin does
// not imply any access to keys: that comes from Permissions only (except
// for the built-in root role, which has both).
type Role struct {
	Name        string
	Permissions []Permission
	Admin       bool
}

// User is a user: a bcrypt password hash (empty for a user who
// authenticates only by client certificate), the names of its roles
// (sorted, no duplicates) and its token generation.
//
// Generation is the auth revision of the change that created the user or
// last set its password. A token carries the generation it was issued
// at and is valid only while it equals the user's: a password change, or
// deleting and re-creating the user, revokes every earlier token.
type User struct {
	Name         string
	PasswordHash []byte
	Roles        []string
	Generation   uint64
}

// HasPassword reports whether the user has a password (otherwise it can
// authenticate only by client certificate).
func (u User) HasPassword() bool { return len(u.PasswordHash) > 0 }

// HasRole reports whether the user holds the named role.
func (u User) HasRole(role string) bool { return slices.Contains(u.Roles, role) }

// RootRole is the name of the built-in role: admin, and readwrite on
// every key. It always exists and cannot be deleted or changed.
const RootRole = "root"

// TokenKeySize is the size in bytes of the HMAC key for tokens (Enable's
// TokenKey).
const TokenKeySize = 32

// MaxNameSize is the longest user or role name, in bytes.
const MaxNameSize = 128

// MaxKeySize is the longest key or prefix a permission may name, in
// bytes. It matches the fsm's key limit.
const MaxKeySize = 1024

// rootRole returns the built-in root role's definition.
func rootRole() Role {
	return Role{Name: RootRole, Admin: true, Permissions: []Permission{{Key: "", Prefix: true, Access: ReadWrite}}}
}

// State is the replicated auth state at one auth revision.
//
// A State is immutable once published: Apply returns a new State, and no
// code may modify a State (or the maps and slices it holds) that other
// goroutines can see. Users and Roles are keyed by name. Roles always
// holds the built-in root role in states made by New, Apply and Decode;
// a zero State is valid too and behaves alike (the root role is built
// in, not looked up).
type State struct {
	// Enabled says whether auth is enforced. When false every request is
	// allowed and tokens are neither issued nor accepted.
	Enabled bool
	// Revision counts the auth changes applied: it increases by one with
	// every successful Apply.
	Revision uint64
	// TokenKey is the HMAC-SHA256 key tokens are signed with:
	// TokenKeySize bytes while Enabled, empty while disabled.
	TokenKey []byte
	// Users by name.
	Users map[string]User
	// Roles by name.
	Roles map[string]Role
}

// New returns the initial auth state: disabled, revision 0, no users, and
// only the root role.
func New() *State {
	return &State{Users: map[string]User{}, Roles: map[string]Role{RootRole: rootRole()}}
}

// Clone returns a deep copy of s that the caller may modify. It also
// normalises the copy: its maps exist and hold the root role, each
// user's roles are sorted without duplicates, each role's permissions
// are sorted by key (key before prefix). Apply relies on that order.
func (s *State) Clone() *State {
	c := &State{
		Enabled:  s.Enabled,
		Revision: s.Revision,
		TokenKey: slices.Clone(s.TokenKey),
		Users:    make(map[string]User, len(s.Users)),
		Roles:    make(map[string]Role, len(s.Roles)+1),
	}
	for name, u := range s.Users {
		u.PasswordHash = slices.Clone(u.PasswordHash)
		u.Roles = slices.Clone(u.Roles)
		slices.Sort(u.Roles)
		u.Roles = slices.Compact(u.Roles)
		c.Users[name] = u
	}
	for name, r := range s.Roles {
		r.Permissions = slices.Clone(r.Permissions)
		slices.SortStableFunc(r.Permissions, comparePermission)
		c.Roles[name] = r
	}
	c.Roles[RootRole] = rootRole()
	return c
}

// User returns the named user and whether it exists.
func (s *State) User(name string) (User, bool) {
	u, ok := s.Users[name]
	return u, ok
}

// Role returns the named role and whether it exists. The root role
// always exists.
func (s *State) Role(name string) (Role, bool) {
	if name == RootRole {
		return rootRole(), true
	}
	r, ok := s.Roles[name]
	return r, ok
}

// UserNames returns the names of all users, sorted.
func (s *State) UserNames() []string {
	names := make([]string, 0, len(s.Users))
	for n := range s.Users {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RoleNames returns the names of all roles, root included, sorted.
func (s *State) RoleNames() []string {
	names := make([]string, 0, len(s.Roles)+1)
	names = append(names, RootRole)
	for n := range s.Roles {
		if n != RootRole {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Need is what one request needs: Admin, or Access on one key (Prefix
// false) or on every key under the prefix Key (Prefix true; Key "" asks
// for every key).
type Need struct {
	Access Access
	Key    string
	Prefix bool
	Admin  bool
}

// String describes the need for error messages, e.g. `read on prefix "a/"`.
func (n Need) String() string {
	if n.Admin {
		return "admin"
	}
	if n.Prefix {
		return fmt.Sprintf("%s on prefix %q", n.Access, n.Key)
	}
	return fmt.Sprintf("%s on key %q", n.Access, n.Key)
}

// covers reports whether permission p covers the key or prefix asked.
//
// A grant on prefix P covers key K iff K starts with P, and covers a
// requested prefix Q iff Q starts with P (the whole asked prefix lies
// inside the grant). A grant on key K covers only the key K, never a
// prefix (not even the prefix K).
func (p Permission) covers(key string, prefix bool) bool {
	if p.Prefix {
		return strings.HasPrefix(key, p.Key)
	}
	return !prefix && key == p.Key
}

// IsAdmin reports whether the user exists and holds a role with the
// admin flag (the root role among them). It does not look at Enabled.
func (s *State) IsAdmin(user string) bool {
	u, ok := s.Users[user]
	if !ok {
		return false
	}
	for _, rn := range u.Roles {
		if r, ok := s.Role(rn); ok && r.Admin {
			return true
		}
	}
	return false
}

// Allowed returns nil if the user may do what need asks, else an error
// wrapping ErrPermissionDenied that says what was missing.
//
// While auth is disabled everything is allowed. Otherwise the user must
// exist (the anonymous user "" never does); an Admin need is met by a
// role with the admin flag; an Access need is met when, for each of read
// and write that it asks, some permission of some role of the user with
// that access covers the key or the whole prefix (see DESIGN.md). The
// read and write halves of a ReadWrite need may come from different
// grants. A need with no access and no admin flag is refused.
func (s *State) Allowed(user string, need Need) error {
	if !s.Enabled {
		return nil
	}
	u, ok := s.Users[user]
	if !ok {
		if user == "" {
			return fmt.Errorf("%w: anonymous caller needs %s", ErrPermissionDenied, need)
		}
		return fmt.Errorf("%w: no user %q", ErrPermissionDenied, user)
	}
	if need.Admin {
		if s.IsAdmin(user) {
			return nil
		}
		return fmt.Errorf("%w: user %q needs admin", ErrPermissionDenied, user)
	}
	if !need.Access.valid() {
		return fmt.Errorf("%w: user %q: invalid need %s", ErrPermissionDenied, user, need)
	}
	var have Access
	for _, rn := range u.Roles {
		r, ok := s.Role(rn)
		if !ok {
			continue
		}
		for _, p := range r.Permissions {
			if p.Access&^have != 0 && p.covers(need.Key, need.Prefix) {
				have |= p.Access
				if have&need.Access == need.Access {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%w: user %q needs %s", ErrPermissionDenied, user, need)
}

// AllowedAll returns nil if the user may do everything in needs, else the
// error of Allowed for the first need refused.
func (s *State) AllowedAll(user string, needs []Need) error {
	for _, n := range needs {
		if err := s.Allowed(user, n); err != nil {
			return err
		}
	}
	return nil
}

// hasUsableRoot reports whether some user holds the root role. A user
// without a password counts: it authenticates by client certificate (see
// DESIGN.md, "Enabling").
func (s *State) hasUsableRoot() bool {
	for _, u := range s.Users {
		if u.HasRole(RootRole) {
			return true
		}
	}
	return false
}

// HasRootWithPassword reports whether some user holding the root role
// has a password. Apply does not require one (a root that authenticates
// by client certificate is enough); a server that does not verify client
// certificates may use this to refuse enabling auth when it would lock
// everyone out.
func (s *State) HasRootWithPassword() bool {
	for _, u := range s.Users {
		if u.HasRole(RootRole) && u.HasPassword() {
			return true
		}
	}
	return false
}
